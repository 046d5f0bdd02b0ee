"""When may the next request start? Two small meters, consulted in order.

``Slowdown`` paces the job after 429s, so a throttled job converges on what the server
allows instead of hammering it. Once per second it looks at the share of starts that
were answered 429 (DCTCP's marked fraction, RFC 8257 section 3.3). Above a tenth, it
cuts the pace by half that share and by at least a fifth (AIMD's decrease), so a server
far over its limit is met at once. At or below a tenth, the pace grows by a tenth, and
every success adds a little more, until the slow-down lets go. The share threshold,
rather than "any 429", keeps a few stray 429s from dragging a fast job down to a crawl
(with 5 % random 429s, "any 429" held an unlimited job near 11 requests a second).

``Pace`` enforces ``--rate R``: no burst at start, at most R starts in any one-second
window, and about 98 % of R used (see its docstring). Like aiometer's meters, each part
answers only "how long until the next start", and they compose.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Final

import anyio
from aiolimiter import AsyncLimiter

MARGIN: Final = 0.02
"""The pace runs 2 % under ``--rate``: room for arrival jitter at the server."""
_SPAN: Final = 1 + MARGIN / 2
"""Seconds that any ``rate + 1`` consecutive starts span at least: 10 ms of jitter absorbed."""

_WINDOW: Final = 1.0
"""Seconds of starts and 429s the share is measured over."""
_COOLDOWN: Final = 1.0
"""At most one change of pace per this many seconds: let the last change show its effect."""
_QUIET: Final = 0.1
"""A share of 429s at or below this is noise, not a limit: speed up rather than cut."""
_CUT: Final = 0.8
"""The least a cut takes off: a fifth, as in the classic AIMD decrease."""
_GROWTH: Final = 1.1
_GAIN: Final = 1.0
"""Requests per second added back per second of successes, on top of ``_GROWTH``."""
_FLOOR: Final = 0.5


class Pace:
    """At most ``rate`` starts in any one-second window, evenly spaced; 0 means no limit.

    Two parts. An aiolimiter leaky bucket draining ``rate / (1 + MARGIN)`` per second sets
    the pace; it holds two units but starts with one already in, so the first start is
    not a burst, while a wake-up a millisecond late (uvloop's timers tick in whole
    milliseconds) is made up on the next start instead of slowing every later one. A
    window of the last ``rate`` start slots then caps any ``rate + 1`` consecutive starts
    to at least ``1 + MARGIN / 2`` seconds apart, measured on ``time.monotonic``: the
    guarantee does not depend on the bucket's arithmetic.
    """

    def __init__(self, rate: float) -> None:
        self._limiter = AsyncLimiter(2, 2 * (1 + MARGIN) / rate) if rate > 0 else None
        self._primed = False
        self._slots: deque[float] = deque(maxlen=max(1, int(rate)))

    @property
    def free(self) -> bool:
        """True when there is no limit to wait for."""
        return self._limiter is None

    async def wait(self) -> None:
        """Return when the next request may start."""
        if self._limiter is None:
            return
        if not self._primed:
            self._primed = True
            await self._limiter.acquire(1)  # one unit in: no burst at start
        await self._limiter.acquire()
        slots, now = self._slots, time.monotonic()
        slot = max(now, slots[0] + _SPAN) if len(slots) == slots.maxlen else now
        slots.append(slot)  # reserved before sleeping, so concurrent waiters queue behind it
        if slot > now:
            await anyio.sleep(slot - now)


class Slowdown:
    """Job-wide pace that engages when 429s are a real share, and recovers as they fade."""

    def __init__(self, ceiling: float) -> None:
        self._ceiling = ceiling or math.inf
        self.rate: float | None = None  # requests per second while slowed, None when not
        self._release = math.inf
        self._next_slot = 0.0
        self._last_change = -math.inf
        self._starts: deque[float] = deque()
        self._throttles: deque[float] = deque()

    def started(self, now: float) -> None:
        """Count a start; while slowed, this is also when the pace may grow."""
        self._starts.append(now)
        self._forget(now)
        if self.rate is not None:
            self._adjust(now)

    def throttled(self, now: float) -> None:
        """A 429 arrived: count it, and cut the pace if 429s are more than noise."""
        self._throttles.append(now)
        self._forget(now)
        self._adjust(now)

    def succeeded(self) -> None:
        """An answer that was not a 429: speed up a little."""
        if self.rate is not None:
            self._set(self.rate + _GAIN / self.rate)

    def _forget(self, now: float) -> None:
        for window in (self._starts, self._throttles):
            while window and window[0] <= now - _WINDOW:
                window.popleft()

    def _adjust(self, now: float) -> None:
        """At most once per cooldown: cut when 429s are over a tenth of starts, else grow."""
        if now - self._last_change < _COOLDOWN:
            return
        starts = max(len(self._starts), len(self._throttles), 1)
        share = len(self._throttles) / starts
        if share > _QUIET:
            base = self.rate
            if base is None:  # engage at the pace the server just saw
                base = max(float(starts), _FLOOR)
                self._release = min(self._ceiling, base * 2)
            self.rate = max(_FLOOR, base * min(_CUT, 1 - share / 2))
            self._last_change = now
        elif self.rate is not None:
            self._set(self.rate * _GROWTH)
            self._last_change = now

    def _set(self, rate: float) -> None:
        self.rate = None if rate >= self._release else rate

    async def wait(self) -> None:
        """Return at this request's reserved slot while slowed; at once otherwise."""
        if self.rate is None:
            return
        now = anyio.current_time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1 / self.rate
        if slot > now:
            await anyio.sleep(slot - now)


class Admission:
    """The gate every request passes just before it starts; it takes its own feedback.

    Callers ask two things only: ``wait`` before a request, ``answered`` after it.
    """

    def __init__(self, rate: float) -> None:
        self._pace = Pace(rate)
        self._slowdown = Slowdown(rate)

    @property
    def free(self) -> bool:
        """True when nothing would make a request wait: no rate limit, not slowed."""
        return self._pace.free and self._slowdown.rate is None

    async def wait(self) -> None:
        """Wait for the slow-down slot, then the user's rate; then the request starts.

        When ``free``, this returns without a checkpoint: the unlimited case costs nothing.
        """
        if not self.free:
            await self._slowdown.wait()
            await self._pace.wait()
        self._slowdown.started(anyio.current_time())

    def answered(self, *, throttled: bool) -> None:
        """An answer came: a 429 (``throttled``) slows the job, anything else speeds it up."""
        if throttled:
            self._slowdown.throttled(anyio.current_time())
        else:
            self._slowdown.succeeded()
