"""When may the next request start? Two small meters, consulted in order.

``Governor`` finds the rate a throttling server accepts and paces the job just under it.
It is BBR's idea (pace at the measured delivery rate rather than cut on loss as AIMD does;
Cardwell et al., "BBR: Congestion-Based Congestion Control", ACM Queue 2016) fitted to
429s. Once 429s are more than noise, the server's cap is the number of *accepted* answers
over its window (the ``Retry-After`` span, one second by default), and the pace goes to
99 % of that. While 429s go on, the cap is measured again every eighth of a window (a
measure only ever lowers the pace), from the last half window alone when most answers
there were 429s, so a cap that drops is followed within a window or less.
After a quiet hold the pace probes upward, gently at first and faster the longer no 429
comes, so a raised cap is found in seconds; the next 429 measures the cap again, and a
probe that reaches ``--rate`` lets go. When 429s come in a row and nothing is accepted
for a while, the server is full (a sliding window fills in a burst, then refuses until its
oldest start ages out): new starts pause until it can take more, rather than spend 429s
and retries; a server that accepts nothing at all is left alone for its ``Retry-After``.

``Pace`` enforces ``--rate R``: no burst at start, at most R starts in any one-second
window, and about 98 % of R used (see its docstring). Like aiometer's meters, each part
answers only "how long until the next start", and they compose.
"""

from __future__ import annotations

import math
import time
from collections import deque
from itertools import takewhile
from typing import Final

import anyio
from aiolimiter import AsyncLimiter

MARGIN: Final = 0.02
"""The pace runs 2 % under ``--rate``: room for arrival jitter at the server."""
_SPAN: Final = 1 + MARGIN / 2
"""Seconds that any ``rate + 1`` consecutive starts span at least: 10 ms of jitter absorbed."""

_UNDER: Final = 0.99
"""The pace sits this far under the accepted rate measured: under the cap, not on it."""
_NOISE: Final = 0.1
"""A share of 429s at or below this, in a job not yet slowed, is noise, not a cap."""
_WINDOW: Final = (1.0, 10.0)
"""The server's window is its ``Retry-After``, within these bounds (seconds)."""
_HOLD: Final = 1.5
"""Windows of steady pace after a change before probing: let the measure settle."""
_PROBE: Final = 0.25
"""Probe growth: the pace is multiplied by exp(_PROBE * t**2), t seconds into the probe:
+6 % after half a second, x3 after 2.1 s. Gentle near the cap, quick to find a raised one."""
_RELEASE: Final = 4.0
"""With no ``--rate``, the governor lets go once probing passes this many times the cap."""
_SWAMPED: Final = 0.4
"""A share of 429s over the last half window above this says the cap just dropped."""
_LATE: Final = 0.01
"""A wake-up at most this late is counted from its slot."""
_FULL: Final = 3
"""429s in a row, with nothing accepted for a while, that say a sliding window is full."""
_FLOOR: Final = 0.2
"""Requests per second at least: the job never stalls."""


class Governor:
    """The pace a throttling server accepts, as a pure function of time and answers.

    ``answered`` takes each answer, ``earliest`` says when the next start may be, and
    ``started`` records it. ``rate`` is None while no cap is in force.
    """

    def __init__(self, ceiling: float) -> None:
        self._ceiling = ceiling or math.inf
        self._window = _WINDOW[0]
        self._accepted: deque[float] = deque()  # answer times within the window
        self._refused: deque[float] = deque()
        self._first: float | None = None  # first start: no measure spans more than the job
        self._base: float | None = None  # pace when the probe starts
        self._cap = 0.0  # the accepted rate last measured
        self._changed = -math.inf
        self._onset: float | None = None  # first 429 while not slowed: the job met the cap
        self._since_onset = 0  # answers accepted since then
        self._last_start = -math.inf
        self._closed_until = -math.inf
        self._refused_in_a_row = 0  # 429s since the last accepted answer

    def rate(self, now: float) -> float | None:
        """The pace at ``now`` (requests per second), or None when not slowed."""
        if self._base is None:
            return None
        pace, probing = self._base, now - self._changed - _HOLD * self._window
        if probing > 0:
            pace *= math.exp(min(_PROBE * probing * probing, 50.0))
            if pace >= _RELEASE * self._cap:
                return None  # probed far past the cap: let go
        return None if pace >= self._ceiling else pace  # at --rate there is nothing to slow

    def earliest(self, now: float) -> float:
        """When the next request may start (``now`` or later)."""
        pace = self.rate(now)
        if pace is None:
            self._base = None
            return max(now, self._closed_until)
        return max(now, self._closed_until, self._last_start + 1 / pace)

    def idle(self, now: float) -> bool:
        """True when the next start need not wait at all."""
        return self._base is None and now >= self._closed_until

    def started(self, now: float) -> None:
        """A request starts now."""
        if self._first is None:
            self._first = now
        self._last_start = now

    def answered(self, now: float, *, throttled: bool, retry_after: float | None = None) -> None:
        """An answer came; a 429 (``throttled``) may measure the cap and lower the pace."""
        horizon = now - self._window
        for times in (self._accepted, self._refused):
            while times and times[0] <= horizon:
                times.popleft()
        if not throttled:
            self._accepted.append(now)
            self._since_onset += 1
            self._refused_in_a_row = 0
            return
        self._refused_in_a_row += 1
        if self._base is None and not self._refused:
            self._onset, self._since_onset = now, 0
        self._refused.append(now)
        if retry_after is not None:
            self._window = min(max(retry_after, _WINDOW[0]), _WINDOW[1])
        self._measure(now, retry_after)

    def _measure(self, now: float, retry_after: float | None) -> None:
        """After a 429: engage, or measure the cap again and lower the pace to just under it."""
        accepted, refused = len(self._accepted), len(self._refused)
        if self._base is None and (refused < 2 or refused <= _NOISE * (accepted + refused)):
            return  # stray 429s in a fast job: noise
        if accepted == 0:  # the server takes nothing: leave it alone as it asks
            self._closed_until = now + (retry_after or self._window)
        elif (row := self._refused_in_a_row) >= _FULL and now - self._accepted[-1] > 2 / (
            per_window := self._per_window
        ):
            # Nothing came through for twice the spacing of what the window took: the server
            # is full. A sliding window takes more as its oldest start ages out; a cap that
            # just dropped, once what it remembers does. Pause, longer the longer it lasts.
            reopen = max(self._accepted[0] + self._window, now + row / per_window)
            self._closed_until = max(self._closed_until, reopen)
        if now - self._changed < self._window / 8:
            return  # measured a moment ago: let that change show its effect
        self._cap = max(self._per_window, self._onset_rate(now, accepted))
        meeting = self._onset is not None and now - self._onset < self._window
        recent = None if meeting else self._recent(now)  # the onset is measured its own way
        if recent is not None:
            self._cap = min(self._cap, max(recent, self._cap / 2))
        pace = max(_FLOOR, _UNDER * self._cap)
        current = self.rate(now)
        # A cut takes at most half: one window may have held too few starts to measure by.
        self._base = pace if current is None else min(current, max(pace, current / 2))
        self._changed = now

    def _recent(self, now: float) -> float | None:
        """The accepted rate over the last half window, when most answers there were 429s.

        A cap that drops shows there first: the whole window still holds what the old cap
        let through, and would follow the drop only a window late.
        """
        since = now - self._window / 2
        accepted = sum(1 for _ in takewhile(since.__lt__, reversed(self._accepted)))
        refused = sum(1 for _ in takewhile(since.__lt__, reversed(self._refused)))
        if refused <= _SWAMPED * (accepted + refused):
            return None
        return accepted / (self._window / 2)

    @property
    def _per_window(self) -> float:
        """Answers accepted over the window, per second."""
        return len(self._accepted) / self._window

    def _onset_rate(self, now: float, accepted: int) -> float:
        """The accepted rate since the job met the cap, for the first window after it.

        A window that reaches back before the job started (or before it was sending
        faster than the cap) under-counts: a token bucket's burst was all it took then.
        Half a window after the first 429, what came through since is the cap; before
        that, the accepted rate since the first start (it over-counts the burst: later
        measures bring it down).
        """
        if self._onset is None or self._first is None or now - self._onset >= self._window:
            return 0.0  # the window alone measures
        since = now - self._onset
        if since >= self._window / 2:
            return self._since_onset / since
        return accepted / max(min(self._window, now - self._first), 1e-3)


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


class Admission:
    """The gate every request passes just before it starts; it takes its own feedback.

    Callers ask two things only: ``wait`` before a request, ``answered`` after it.
    """

    def __init__(self, rate: float) -> None:
        self._pace = Pace(rate)
        self._governor = Governor(rate)
        self._turn = anyio.Lock()

    @property
    def free(self) -> bool:
        """True when nothing would make a request wait: no rate limit, not slowed."""
        return self._free(time.monotonic())

    def try_start(self) -> bool:
        """Start a request now when nothing would make it wait: the unlimited case's cost."""
        now = time.monotonic()
        if not self._free(now):
            return False
        self._governor.started(now)
        return True

    def _free(self, now: float) -> bool:
        return self._pace.free and self._governor.idle(now)

    async def wait(self) -> None:
        """Wait for the governor's turn while it paces, then for the user's rate.

        While the governor paces, waiters queue on a lock and only the first sleeps,
        re-reading the pace when it wakes, so a cut applies to requests already waiting.
        ``--rate`` alone never takes the lock (its meter queues waiters itself); the
        unlimited case is ``try_start``'s, with no checkpoint.
        """
        governor = self._governor
        paced = False
        if governor.idle(time.monotonic()):
            await self._pace.wait()
            if governor.idle(now := time.monotonic()):
                governor.started(now)
                return
            paced = True  # the governor took over while this waited for --rate
        async with self._turn:
            slot = -math.inf
            while True:  # the pace may change while this waiter sleeps
                now = time.monotonic()
                at = governor.earliest(now)
                if at <= now:
                    break
                slot = at
                await anyio.sleep(at - now)
            # Count a wake-up a little late (timers tick in milliseconds) from its slot, so
            # the next start makes it up instead of every start drifting later.
            governor.started(slot if now - slot < _LATE else now)
        if not paced:
            await self._pace.wait()

    def answered(self, *, throttled: bool, retry_after: float | None = None) -> None:
        """An answer came: a 429 (``throttled``) may slow the job; ``Retry-After`` in seconds."""
        self._governor.answered(time.monotonic(), throttled=throttled, retry_after=retry_after)
