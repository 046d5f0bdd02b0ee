"""Admission: the 429 slow-down as pure arithmetic, then against a rate-limited emulator."""

import time

import anyio
import pytest

from bulkretry import Retriggered
from bulkretry._admission import Admission, Pace, Slowdown
from bulkretry.emulator import Faults

from .test_api import collect

pytestmark = pytest.mark.anyio


def traffic(slowdown, per_second, seconds=1.0, *, start=0.0, throttled_every=0):
    """Feed evenly spaced starts; every ``throttled_every``-th one is answered 429."""
    count = round(per_second * seconds)
    for n in range(count):
        now = start + n / per_second
        slowdown.started(now)
        if throttled_every and n % throttled_every == throttled_every - 1:
            slowdown.throttled(now)
        else:
            slowdown.succeeded()
    return start + seconds


def test_stray_429s_do_not_slow_the_job():
    """A 429 share at the noise level (5 %) leaves a fast job at full speed for good."""
    slowdown = Slowdown(0)
    traffic(slowdown, 200, seconds=10, throttled_every=20)
    assert slowdown.rate is None


def test_a_real_share_of_429s_engages_below_the_pace_seen():
    """When over a tenth of starts get 429, the pace drops below what the server just saw."""
    slowdown = Slowdown(0)
    now = traffic(slowdown, 40)
    for _ in range(8):
        slowdown.throttled(now)
    assert slowdown.rate is not None
    assert 0 < slowdown.rate <= 40 * 0.8


def test_a_deeper_share_cuts_deeper():
    """A second of all-429 answers halves the pace; a second with a fifth of 429s takes a fifth."""
    paces = {}
    for every in (1, 5):
        slowdown = Slowdown(0)
        now = traffic(slowdown, 40)
        for _ in range(8):
            slowdown.throttled(now)
        engaged = slowdown.rate
        assert engaged is not None
        now = traffic(slowdown, engaged, start=now, throttled_every=every)
        slowdown.started(now)  # the cooldown is over: the second's share decides
        assert slowdown.rate is not None
        paces[every] = slowdown.rate / engaged
    assert 0.45 < paces[1] < 0.55
    assert 0.75 < paces[5] < 0.85  # a fifth off, after the successes added a little


def test_cuts_at_most_once_per_cooldown():
    """A burst of 429s within one cooldown cuts once; after the cooldown it may cut again."""
    slowdown = Slowdown(0)
    now = traffic(slowdown, 40)
    for _ in range(10):
        slowdown.throttled(now)
    first = slowdown.rate
    for step in range(1, 10):
        for _ in range(10):
            slowdown.throttled(now + step * 0.09)  # dense 429s for 0.81 s more
    assert slowdown.rate == first
    slowdown.throttled(now + 1.0)
    assert first is not None and slowdown.rate is not None
    assert slowdown.rate < first


def test_never_below_the_floor():
    """However long every answer is a 429, the pace stays above zero, so the job progresses."""
    slowdown = Slowdown(0)
    slowdown.throttled(0.0)
    floor = slowdown.rate
    assert floor is not None and floor > 0
    for second in range(1, 120):
        slowdown.throttled(float(second))
        slowdown.started(second + 0.5)
        assert slowdown.rate == floor


def test_recovers_as_429s_fade_and_then_releases():
    """After the 429s stop, the pace grows every second until the slow-down lets go."""
    slowdown = Slowdown(0)
    now = traffic(slowdown, 50)
    for _ in range(50):
        slowdown.throttled(now)
    paces = [slowdown.rate]
    while slowdown.rate is not None and len(paces) < 60:
        now = traffic(slowdown, slowdown.rate, start=now)
        paces.append(slowdown.rate)
    assert slowdown.rate is None, paces  # released: back to full speed
    grown = [p for p in paces if p is not None]
    assert grown == sorted(grown) and len(grown) > 2  # a steady climb, not a jump


def test_successes_alone_speed_up_a_slowed_job():
    """Each success adds back a little pace, about one request per second per second."""
    slowdown = Slowdown(0)
    slowdown.rate = 10.0
    for _ in range(10):  # one second of successes at 10/s
        slowdown.succeeded()
    assert 10.9 < slowdown.rate < 11.1


def test_release_never_exceeds_the_users_rate():
    """Recovery lets go no later than the user's --rate."""
    slowdown = Slowdown(10)
    now = traffic(slowdown, 10)
    for _ in range(5):
        slowdown.throttled(now)
    assert slowdown.rate is not None
    seconds = 0
    while slowdown.rate is not None:
        assert slowdown.rate <= 10
        now = traffic(slowdown, slowdown.rate, start=now)
        seconds += 1
        assert seconds < 60
    assert seconds > 0


async def test_slowed_waits_are_spaced_by_the_pace():
    """While slowed at R per second, successive admissions are 1/R apart."""
    slowdown = Slowdown(0)
    slowdown.rate = 20.0
    start = anyio.current_time()
    for _ in range(6):
        await slowdown.wait()
    assert anyio.current_time() - start >= 5 / 20 - 0.01


async def test_admission_is_immediate_when_unlimited_and_not_slowed():
    """Rate 0 and no 429: the gate costs nothing."""
    admission = Admission(0)
    with anyio.fail_after(0.5):
        for _ in range(1000):
            await admission.wait()


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
