from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest

from bulkretry.emulator import Emulator, Faults, serve
from bulkretry.emulator.faults import FaultPlan

from .support import HEADERS, retrigger

pytestmark = pytest.mark.anyio

# fault -> (status answered, whether the re-trigger was applied)
ANSWERED = {
    "throttle": (429, False),
    "unavailable": (503, False),
    "error_after": (500, True),
    "garbled_after": (200, True),
}


@pytest.mark.parametrize("fault", sorted(ANSWERED))
async def test_probabilistic_answered_faults(emu, server, session, fault):
    """Each answered fault at probability 1 gives its status and applies only if 'after'."""
    emu.faults = Faults(**{fault: 1.0})
    status, headers, body = await retrigger(session, server, "failed-1")
    expected_status, applied = ANSWERED[fault]
    assert status == expected_status
    assert emu.stats.retriggers["failed-1"] == int(applied)
    assert emu.stats.responses == {expected_status: 1}
    if fault == "throttle":
        assert headers["Retry-After"] == "1"
        assert orjson.loads(body) == {"error_code": "429050", "message": "Too many requests"}
    if fault == "garbled_after":
        assert headers["Content-Type"].startswith("text/html")
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)


@pytest.mark.parametrize(("fault", "applied"), [("drop_before", False), ("drop_after", True)])
async def test_drops_make_aiohttp_raise(emu, server, session, fault, applied):
    """A dropped connection surfaces as ServerDisconnectedError; only drop_after applies."""
    emu.faults = Faults(**{fault: 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await retrigger(session, server, "failed-1")
    assert emu.stats.retriggers["failed-1"] == int(applied)
    assert emu.stats.responses == {0: 1}
    emu.faults = Faults()
    assert (await retrigger(session, server, "failed-1"))[0] == 200


async def test_retry_after_none_omits_header(emu, server, session):
    """retry_after=None sends a 429 without Retry-After."""
    emu.faults = Faults(throttle=1.0, retry_after=None)
    status, headers, _ = await retrigger(session, server, "failed-1")
    assert status == 429
    assert "Retry-After" not in headers


async def test_faults_answer_before_lookup(emu, server, session):
    """Before-faults answer even for unknown runs, as the gateway would."""
    emu.faults = Faults(unavailable=1.0)
    assert (await retrigger(session, server, "ghost"))[0] == 503


async def test_after_faults_need_an_applied_retrigger(emu, server, session):
    """An after-fault on a non-retriable run still gets the honest 400."""
    emu.faults = Faults(error_after=1.0)
    assert (await retrigger(session, server, "full-success"))[0] == 400


async def test_script_is_consumed_in_order_then_draws(emu, server, session):
    """A run's script is played one fault per request, then the draw (here none) applies."""
    emu.faults = Faults(script={"failed-1": ["throttle", "unavailable", "ok", "error_after"]})
    statuses = [(await retrigger(session, server, "failed-1"))[0] for _ in range(5)]
    assert statuses == [429, 503, 200, 500, 200]
    assert emu.stats.retriggers["failed-1"] == 3
    assert (await retrigger(session, server, "failed-upper"))[0] == 200


async def test_script_overrides_draw(emu, server, session):
    """A scripted 'ok' wins over a probability of 1."""
    emu.faults = Faults(throttle=1.0, script={"failed-1": ["ok"]})
    assert (await retrigger(session, server, "failed-1"))[0] == 200
    assert (await retrigger(session, server, "failed-1"))[0] == 429


async def test_new_faults_restart_scripts(emu, server, session):
    """Assigning a new Faults starts its scripts from the top."""
    emu.faults = Faults(script={"failed-1": ["unavailable"]})
    assert (await retrigger(session, server, "failed-1"))[0] == 503
    emu.faults = Faults(script={"failed-1": ["unavailable"]})
    assert (await retrigger(session, server, "failed-1"))[0] == 503


async def test_timeout_after_applies_then_hangs(session):
    """timeout_after applies, outlives the client timeout, and shutdown stays prompt."""
    emu = Emulator(auto_create=True, faults=Faults(script={"r": ["timeout_after"]}))
    started = time.monotonic()
    async with serve(emu) as server:
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(
                f"{server.base_url}/runs/r/action",
                params={"op": "re-trigger"},
                headers=HEADERS,
                timeout=aiohttp.ClientTimeout(total=0.3),
            ):
                pass
        assert emu.stats.retriggers == {"r": 1}
    assert time.monotonic() - started < 2.0


async def test_timeout_after_wakes_on_shutdown_with_client_waiting(session):
    """A client still waiting when the server stops sees a disconnect, not an hour's wait."""
    emu = Emulator(auto_create=True, faults=Faults(script={"r": ["timeout_after"]}))
    async with serve(emu) as server:
        request = asyncio.ensure_future(retrigger(session, server, "r"))
        for _ in range(500):
            if emu.stats.retriggers:
                break
            await asyncio.sleep(0.01)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await request


async def test_latency_delays_each_request(emu, server, session):
    """Latency is added to every Flow Service answer."""
    emu.faults = Faults(latency=0.2)
    started = time.monotonic()
    await retrigger(session, server, "failed-1")
    assert time.monotonic() - started >= 0.2


@pytest.mark.slow
async def test_max_rate_admits_only_that_many_per_second(session):
    """max_rate admits N re-triggers per sliding second; the rest get 429, Retry-After 1."""
    emu = Emulator(auto_create=True, faults=Faults(max_rate=5))
    async with serve(emu) as server:
        answers = await asyncio.gather(*(retrigger(session, server, f"run-{i}") for i in range(12)))
        assert sorted(status for status, _, _ in answers) == [200] * 5 + [429] * 7
        assert {h["Retry-After"] for status, h, _ in answers if status == 429} == {"1"}
        assert sum(emu.stats.retriggers.values()) == 5
        await asyncio.sleep(1.05)
        assert (await retrigger(session, server, "late"))[0] == 200


def test_token_bucket_admits_the_burst_then_the_rate():
    """With a burst, max_rate is a token bucket: the burst at once, then max_rate a second."""
    plan, faults = FaultPlan(0), Faults(max_rate=10, burst=3)
    admitted = [not plan.over_rate(faults, 100.0) for _ in range(5)]
    assert admitted == [True] * 3 + [False] * 2
    # 10 tokens a second: one more every 0.1 s, never more than the burst saved up
    steady = [not plan.over_rate(faults, 100.0 + n * 0.05) for n in range(1, 41)]
    assert sum(steady) == 20
    assert sum(not plan.over_rate(faults, 200.0) for _ in range(5)) == 3


def test_rate_schedule_changes_the_cap_mid_job():
    """rate_schedule moves the cap at its times, counted from the first re-trigger."""
    plan = FaultPlan(0)
    faults = Faults(max_rate=30, rate_schedule=[(2.0, 10.0), (4.0, 30.0)])

    def admitted(second: float) -> int:  # 60 evenly spaced requests within one second
        return sum(not plan.over_rate(faults, 50.0 + second + n / 60) for n in range(60))

    assert [admitted(s) for s in (0, 1, 2, 3, 4, 5)] == [30, 30, 10, 10, 30, 30]
    bucket = FaultPlan(0)
    faults = Faults(max_rate=30, burst=5, rate_schedule=[(2.0, 10.0)])
    counts = [
        sum(not bucket.over_rate(faults, 7.0 + s + n / 60) for n in range(60)) for s in range(4)
    ]
    assert counts[0] >= 30 and counts[2] == counts[3] == 10


async def test_a_token_bucket_answers_429_over_http(session):
    """The bucket refuses over HTTP like the window: 429 with Retry-After 1, nothing applied."""
    emu = Emulator(auto_create=True, faults=Faults(max_rate=1, burst=2))
    async with serve(emu) as server:
        answers = await asyncio.gather(*(retrigger(session, server, f"run-{i}") for i in range(5)))
    assert sorted(status for status, _, _ in answers) == [200] * 2 + [429] * 3
    assert sum(emu.stats.retriggers.values()) == 2


async def test_same_seed_same_chaos(session):
    """Two emulators with one seed misbehave identically, so benchmarks are reproducible."""
    outcomes = []
    for _ in range(2):
        emu = Emulator(auto_create=True, seed=7, faults=Faults(throttle=0.3, unavailable=0.3))
        async with serve(emu) as server:
            outcomes.append([(await retrigger(session, server, f"r{i}"))[0] for i in range(20)])
    assert outcomes[0] == outcomes[1]
    assert {200, 429, 503} <= set(outcomes[0])


async def test_list_script_faults_pages(emu, server, session):
    """The list_script plays faults on GET /runs pages before answering normally."""
    # aiohttp resends an idempotent request once after a disconnect, so drop twice.
    script = ["throttle", "drop_before", "drop_before", "error_after", "garbled_after"]
    emu.faults = Faults(list_script=script)
    url = f"{server.base_url}/runs"
    async with session.get(url, headers=HEADERS) as response:
        assert response.status == 429
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with session.get(url, headers=HEADERS):
            pass
    async with session.get(url, headers=HEADERS) as response:
        assert response.status == 500
    async with session.get(url, headers=HEADERS) as response:
        assert response.content_type == "text/html"
    async with session.get(url, headers=HEADERS) as response:
        assert response.status == 200
    assert emu.stats.responses == {429: 1, 0: 2, 500: 1, 200: 2}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"throttle": 1.5},
        {"throttle": 0.6, "drop_after": 0.6},
        {"latency": -1},
        {"max_rate": 0},
        {"max_rate": 5, "burst": 0},
        {"max_rate": 5, "rate_schedule": [(1.0, 0)]},
        {"rate_schedule": [(1.0, 5)]},
        {"script": {"r": ["explode"]}},
        {"ims_script": ["garbled_after"]},
    ],
)
async def test_invalid_faults_are_refused(kwargs):
    """Faults refuses impossible probabilities and unknown fault names."""
    with pytest.raises(ValueError):  # noqa: PT011 - any of several messages
        Faults(**kwargs)
