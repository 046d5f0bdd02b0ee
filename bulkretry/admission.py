"""When may the next request start? Two small meters, consulted in order.

``Slowdown`` paces the job after 429s (AIMD: cut the pace by a fifth once per second of
429s, add back one request per second for every second of successes), so a throttled
job converges on what the server allows instead of hammering it.

``Pace`` enforces ``--rate R``: an aiolimiter leaky bucket of capacity one that drains
in ``(1 + margin) / R`` seconds. Capacity one means no burst at start, and any R + 1
consecutive starts span at least ``1 + margin`` seconds, so no one-second window sees
more than R even after a few milliseconds of network jitter (cf. aiometer's meters:
each meter answers only "how long until the next start", and they compose).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

import anyio
from aiolimiter import AsyncLimiter

MARGIN: Final = 0.02
"""Slack per one-second window: 2 % of the rate, or 20 ms of arrival jitter."""

_CUT: Final = 0.8
_FLOOR: Final = 0.5
_GAIN: Final = 1.0
_COOLDOWN: Final = 1.0


class Pace:
    """At most ``rate`` starts in any one-second window, evenly spaced; 0 means no limit."""

    def __init__(self, rate: float) -> None:
        self._limiter = AsyncLimiter(1, (1 + MARGIN) / rate) if rate > 0 else None

    async def wait(self) -> None:
        """Return when the next request may start."""
        if self._limiter is not None:
            await self._limiter.acquire()


class Slowdown:
    """Job-wide pace that engages on a 429 and recovers as answers succeed."""

    def __init__(self, ceiling: float) -> None:
        self._ceiling = ceiling or math.inf
        self.rate: float | None = None  # requests per second while slowed, None when not
        self._release = math.inf
        self._next_slot = 0.0
        self._last_cut = -math.inf
        self._recent: deque[float] = deque()

    def started(self, now: float) -> None:
        """Count a start, to know the pace actually achieved when a 429 arrives."""
        recent = self._recent
        recent.append(now)
        while recent[0] <= now - 1.0:
            recent.popleft()

    def throttled(self, now: float) -> None:
        """A 429 arrived: slow down, at most once per cooldown."""
        if now - self._last_cut < _COOLDOWN:
            return
        achieved = self.rate or max(float(len(self._recent)), _FLOOR)
        if self.rate is None:
            self._release = min(self._ceiling, achieved * 2)
        self.rate = max(_FLOOR, achieved * _CUT)
        self._last_cut = now

    def succeeded(self) -> None:
        """An answer that was not a 429: speed up a little."""
        if self.rate is not None:
            self.rate += _GAIN / self.rate
            if self.rate >= self._release:
                self.rate = None

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
    """The gate every request passes just before it starts."""

    def __init__(self, rate: float) -> None:
        self._pace = Pace(rate)
        self.slowdown = Slowdown(rate)

    async def wait(self) -> None:
        """Wait for the slow-down slot, then the user's rate; then the request starts."""
        await self.slowdown.wait()
        await self._pace.wait()
        self.slowdown.started(anyio.current_time())
