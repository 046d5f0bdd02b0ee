"""Admission: the 429 slow-down as pure arithmetic, then against a rate-limited emulator."""

import anyio
import pytest

from bulkretry import Retriggered
from bulkretry.admission import Admission, Slowdown
from bulkretry.emulator import Faults

from .test_api import collect

pytestmark = pytest.mark.anyio


def started_at_pace(slowdown, per_second, start=0.0, seconds=1.0):
    """Record evenly spaced starts, as the pipeline does just before each request."""
    count = round(per_second * seconds)
    for n in range(count):
        slowdown.started(start + n / per_second)
    return start + seconds


def test_not_slowed_until_a_429():
    """With no 429 the slow-down is off, whatever the traffic."""
    slowdown = Slowdown(100)
    started_at_pace(slowdown, 50)
    slowdown.succeeded()
    assert slowdown.rate is None


def test_first_429_cuts_below_the_achieved_pace():
    """A 429 sets the pace to a fraction of the starts seen in the last second."""
    slowdown = Slowdown(0)
    now = started_at_pace(slowdown, 40)
    slowdown.throttled(now)
    assert slowdown.rate is not None
    assert 0 < slowdown.rate < 40


def test_cuts_at_most_once_per_cooldown():
    """A burst of 429s inside one cooldown cuts once; the next cooldown may cut again."""
    slowdown = Slowdown(0)
    now = started_at_pace(slowdown, 40)
    slowdown.throttled(now)
    first = slowdown.rate
    for step in range(1, 10):
        slowdown.throttled(now + step * 0.09)  # nine more 429s within 0.81 s
    assert slowdown.rate == first
    slowdown.throttled(now + 1.0)
    assert first is not None and slowdown.rate is not None
    assert slowdown.rate < first


def test_never_below_the_floor():
    """However many 429s arrive, the pace stays above zero, so the job always progresses."""
    slowdown = Slowdown(0)
    slowdown.throttled(0.0)  # nothing started yet: the floor itself
    floor = slowdown.rate
    assert floor is not None and floor > 0
    for second in range(1, 60):
        slowdown.throttled(float(second))
    assert slowdown.rate == floor


def test_recovers_with_successes_and_releases():
    """Successes raise the pace about one request per second per second, then switch it off."""
    slowdown = Slowdown(0)
    now = started_at_pace(slowdown, 20)
    slowdown.throttled(now)
    assert slowdown.rate is not None
    cut = slowdown.rate
    for _ in range(round(cut)):  # about one second of successes at that pace
        slowdown.succeeded()
    assert slowdown.rate is not None
    assert cut + 0.5 < slowdown.rate < cut + 1.5
    for _ in range(10_000):
        if slowdown.rate is None:
            break
        slowdown.succeeded()
    assert slowdown.rate is None  # released: back to full speed


def test_release_never_exceeds_the_users_rate():
    """Recovery releases the slow-down no later than at the user's --rate."""
    slowdown = Slowdown(10)
    now = started_at_pace(slowdown, 10)
    slowdown.throttled(now)
    successes = 0
    while slowdown.rate is not None:
        assert slowdown.rate <= 10
        slowdown.succeeded()
        successes += 1
        assert successes < 1000
    assert successes > 0


def test_a_429_while_slowed_cuts_from_the_current_pace():
    """A second 429 after the cooldown cuts the pace it is at, not the old traffic."""
    slowdown = Slowdown(0)
    now = started_at_pace(slowdown, 50)
    slowdown.throttled(now)
    first = slowdown.rate
    started_at_pace(slowdown, 200, start=now, seconds=1.0)  # a burst that is not the pace
    slowdown.throttled(now + 1.0)
    assert first is not None and slowdown.rate is not None
    assert first / 2 < slowdown.rate < first  # a cut from ~40/s, not from the 200/s burst


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
