"""Admission: the governor against simulated servers, the gate, a rate-limited emulator.

The governor is a pure function of (time, answers), so a whole job runs in simulated time.
"""

import bisect
import contextlib
import heapq
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field

import anyio
import pytest

from bulkretry import Retriggered
from bulkretry._admission import MARGIN, Admission, Governor, Pace
from bulkretry._attempts import Attempts, GaveUp, Policy
from bulkretry._errors import APIError
from bulkretry.emulator import Faults

from .test_api import collect
from .test_attempts import scripted

pytestmark = pytest.mark.anyio


class Window:
    """A server admitting at most ``cap`` per sliding ``span``; ``caps``: (from second, cap)."""

    def __init__(self, *caps, span=1.0):
        self.caps, self.span, self.admitted = caps or ((0.0, 30),), span, deque()

    def cap(self, now):
        """The cap in force at ``now``."""
        return [cap for start, cap in self.caps if now >= start][-1]

    def admit(self, now):
        """Whether a request arriving at ``now`` is accepted."""
        while self.admitted and self.admitted[0] <= now - self.span:
            self.admitted.popleft()
        if len(self.admitted) >= self.cap(now):
            return False
        self.admitted.append(now)
        return True


class Bucket(Window):
    """A token bucket: ``cap`` tokens a second, ``burst`` saved up, full at start."""

    def __init__(self, *caps, burst=5):
        super().__init__(*caps)
        self.burst, self.tokens, self.last = burst, burst, 0.0

    def admit(self, now):
        """Whether a request arriving at ``now`` gets a token."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.cap(now))
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Job:
    """What a simulated job saw: start and success times, 429s, runs that ran out of tries."""

    starts: list = field(default_factory=list)
    successes: list = field(default_factory=list)
    refused: int = 0
    failed: int = 0
    paces: list = field(default_factory=list)  # the governor's pace at each start

    def used(self, cap):
        """Share of ``cap`` used from the first to the last success."""
        return (len(self.successes) - 1) / (self.successes[-1] - self.successes[0]) / cap


LATENCY, TRIES = 0.002, 5


def simulate(server, ids=600, *, rate=100, concurrency=32):
    """A job as the pipeline runs it, in simulated time.

    Each worker owns a run ID until its outcome, a 429 (Retry-After: 1) waits at least a
    second, and every start passes the governor, then --rate.
    """
    governor, rng, spacing = Governor(rate), random.Random(1), (1 + MARGIN) / rate
    job, now, last, busy, seq = Job(), 0.0, -math.inf, 0, 0
    todo, ready, events = iter(range(ids)), deque(), []
    while True:
        while busy < concurrency and (run := next(todo, None)) is not None:
            busy += 1
            ready.append((run, 1))
        gate = max(now, governor.earliest(now), last + spacing) if ready else math.inf
        if gate == math.inf and not events:
            return job
        if events and events[0][0] < gate:
            now, _, run, tried, accepted = heapq.heappop(events)
            if accepted is None:  # a backoff ended
                ready.append((run, tried))
                continue
            governor.answered(now, throttled=not accepted, retry_after=1.0)
            if accepted:
                job.successes.append(now)
            else:
                job.refused += 1
            if accepted or tried == TRIES:
                job.failed += not accepted
                busy -= 1
            else:
                wake = now + max(1.0, rng.uniform(0, 0.5 * 2 ** (tried - 1)))
                seq += 1
                heapq.heappush(events, (wake, seq, run, tried + 1, None))
            continue
        now = gate
        if governor.earliest(now) > now:  # the pace changed meanwhile
            continue
        run, tried = ready.popleft()
        governor.started(now)
        job.starts.append(now)
        job.paces.append(governor.rate(now))
        last, seq = now, seq + 1
        heapq.heappush(events, (now + LATENCY, seq, run, tried, server.admit(now + LATENCY / 2)))


def settled(times, change, good):
    """Seconds after ``change`` until the count of ``times`` in the trailing second is good."""
    at = change
    while at < change + 30:
        at += 0.05
        if good(bisect.bisect_left(times, at) - bisect.bisect_left(times, at - 1.0)):
            return at - change
    return math.inf


@pytest.mark.parametrize("server", [Window(), Bucket()], ids=["window", "bucket"])
def test_a_job_uses_nearly_all_of_a_servers_cap(server):
    """600 IDs at --rate 100 against a 30/s cap: >= 95 % of it used, few 429s, none failed."""
    job = simulate(server)
    assert len(job.successes) == 600
    assert job.failed == 0
    assert job.used(30) >= 0.95
    assert job.refused < 600 / 5


@pytest.mark.parametrize("shape", [Window, Bucket])
def test_a_cap_that_changes_is_followed_down_and_back_up(shape):
    """A cap of 30/s, 10/s from 8 s, 30/s from 16 s: down within 2 s, back up within 5 s."""
    job = simulate(shape((0.0, 30), (8.0, 10), (16.0, 30)), ids=900)
    assert job.failed == 0
    assert settled(job.starts, 8.0, lambda count: count <= 11) <= 2.0
    assert settled(job.successes, 16.0, lambda count: count >= 27) <= 5.0


def test_stray_429s_do_not_slow_a_fast_job():
    """A 429 share at the noise level (5 %) leaves a fast job at full speed for good."""
    governor = Governor(0)
    for n in range(2000):  # 10 s at 200/s
        now = n / 200
        assert governor.earliest(now) == now
        governor.started(now)
        governor.answered(now + 0.001, throttled=n % 20 == 0, retry_after=1.0)
    assert governor.rate(10.0) is None


def test_the_pace_never_exceeds_the_users_rate():
    """A cap of 20/s that rises to 1000/s at --rate 50: the pace probes up to 50, then lets go."""
    job = simulate(Window((0.0, 20), (3.0, 1000)), ids=400, rate=50)
    seen = [pace for pace in job.paces if pace is not None]
    assert seen and max(seen) < 50
    assert job.paces[-1] is None  # released: --rate alone paces the end of the job
    assert job.failed == 0


def test_a_server_that_accepts_nothing_is_left_alone_for_its_retry_after():
    """Only 429s in the window: no start before Retry-After, then a slow pace that goes on."""
    governor = Governor(0)
    for n in range(10):
        governor.started(n * 0.01)
        governor.answered(n * 0.01, throttled=True, retry_after=3.0)
    assert governor.earliest(0.1) >= 0.09 + 3.0 - 1e-9
    pace = governor.rate(3.5)
    assert pace is not None and pace > 0  # the job never stalls
    assert governor.earliest(3.2) < 3.2 + 1 / pace + 1e-9


def test_retry_after_is_the_window_the_cap_is_measured_over():
    """A server counting per 5 s (Retry-After: 5) is measured per 5 s, not per second."""
    server, governor = Window((0.0, 50), span=5.0), Governor(0)
    for n in range(400):  # 100/s into 50 per 5 s (10/s)
        now = n / 100
        governor.started(now)
        governor.answered(now, throttled=not server.admit(now), retry_after=5.0)
    assert 9 <= governor.rate(4.0) <= 10.1


async def test_a_cut_applies_to_requests_already_waiting():
    """Waiters queue on the governor's turn: once slowed, even queued starts are spaced out."""
    admission, starts = Admission(0), []
    governor, now = admission._governor, time.monotonic()  # noqa: SLF001 - its recent past
    for n in range(40):  # the last second: 20 accepted, then 20 refused: a cap of 20/s
        at = now - 1 + n / 40
        governor.started(at)
        governor.answered(at, throttled=n >= 20, retry_after=1.0)
    assert not admission.free
    pace = governor.rate(time.monotonic())
    assert pace is not None and 15 < pace < 25

    async def request():
        await admission.wait()
        starts.append(time.monotonic())

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(request)
    # spaced at the pace on average (a wake-up a little late is made up by the next start)
    assert (starts[-1] - starts[0]) / (len(starts) - 1) >= 0.95 / pace


async def test_the_attempt_loop_hands_retry_after_to_admission():
    """A 429's Retry-After reaches the governor through the attempt loop: it is waited out."""
    admission = Admission(0)
    refused = APIError(429, "429050", "Too many requests", retry_after=8.0)
    for _ in range(2):  # two runs, one attempt each, both 429: the server takes nothing
        with contextlib.suppress(GaveUp):
            await Attempts(Policy(limit=1), gate=admission).run(scripted(refused))
    assert not admission.free
    now = time.monotonic()
    assert admission._governor.earliest(now) >= now + 7.9  # noqa: SLF001 - when it may start


async def test_admission_is_immediate_when_unlimited_and_not_slowed():
    """Rate 0 and no 429: the gate costs nothing."""
    admission = Admission(0)
    with anyio.fail_after(0.5):
        for _ in range(1000):
            await admission.wait()


@pytest.mark.slow
async def test_a_rate_limited_server_is_met_without_failures(emulator, api_settings):
    """Against 30/s at the server, a job at rate 100 slows down and re-triggers every ID once."""
    emulator.faults = Faults(max_rate=30, retry_after=1)
    ids = [f"rl-{n}" for n in range(150)]
    with anyio.fail_after(40):
        outcomes = await collect(ids, api_settings, rate=100)
    assert sorted(o.run_id for o in outcomes) == sorted(ids)
    not_done = [o for o in outcomes if not isinstance(o, Retriggered)]
    assert not_done == []
    assert emulator.stats.retriggers == dict.fromkeys(ids, 1)
    assert emulator.stats.responses[429] > 0  # the limit was met, not avoided by luck


@pytest.mark.slow
async def test_pace_uses_nearly_all_of_the_rate_without_exceeding_it():
    """At R=200 with 32 waiters: no window over R, no burst at start, about 98 % of R used."""
    pace, starts = Pace(200), []

    async def worker(ids):
        for _ in ids:
            await pace.wait()
            starts.append(time.monotonic())

    ids = iter(range(500))
    async with anyio.create_task_group() as tasks:
        for _ in range(32):
            tasks.start_soon(worker, ids)
    assert max(sum(1 for t in starts[i:] if t < s + 1) for i, s in enumerate(starts)) <= 200
    assert starts[1] - starts[0] >= 0.9 / 200
    assert (len(starts) - 1) / (starts[-1] - starts[0]) >= 0.85 * 200  # benchmarks hold 97 %
