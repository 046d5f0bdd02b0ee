"""The library API end to end: the real pipeline against the emulator over loopback."""

from dataclasses import replace

import anyio
import pytest

import bulkretry
from bulkretry import Failed, JobSettings, Planned, Retriggered, Skipped, Uncertain
from bulkretry._backoff import Backoff
from bulkretry.emulator import Faults, Run

from .conftest import API_KEY, ORG, TOKEN

pytestmark = pytest.mark.anyio

FAST = Backoff(base=0)


async def collect(run_ids, api_settings, **settings):
    """Run a job through the public API and return its outcomes in order."""
    job_settings = JobSettings(**({"rate": 0} | settings))
    async with bulkretry.retrigger(run_ids, api_settings, job_settings, backoff=FAST) as job:
        return [outcome async for outcome in job]


async def test_old_run_id_maps_to_the_new_run_id_and_etag_verbatim(emulator, api_settings):
    """Each retriggered outcome carries exactly the id and quoted etag the API returned."""
    ids = [f"run-{n}" for n in range(20)]
    outcomes = await collect(ids, api_settings)
    assert sorted(o.run_id for o in outcomes) == sorted(ids)
    for outcome in outcomes:
        assert isinstance(outcome, Retriggered)
        new_run = emulator.runs[outcome.new_run_id]
        assert outcome.etag == new_run.etag and outcome.etag.startswith('"')
        assert new_run.flow_id == emulator.runs[outcome.run_id].flow_id
        assert (outcome.attempts, outcome.status) == (1, 200)
    assert emulator.stats.retriggers == dict.fromkeys(ids, 1)


async def test_every_request_carries_the_five_documented_headers(emulator, api_settings):
    """Authorization, x-api-key, org, sandbox and content type go on every re-trigger."""
    await collect(["a1", "a2", "a3"], api_settings)
    assert len(emulator.stats.requests) == 3
    for request in emulator.stats.requests:
        assert request.method == "POST"
        assert request.path == f"/data/foundation/flowservice/runs/{request.run_id}/action"
        assert request.query == {"op": "re-trigger"}
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["x-api-key"] == API_KEY
        assert request.headers["x-gw-ims-org-id"] == ORG
        assert request.headers["x-sandbox-name"] == "prod"
        assert request.headers["content-type"] == "application/json"


async def test_duplicates_and_invalid_ids_are_never_sent(emulator, api_settings):
    """A repeated or malformed run ID gets a skipped outcome and no request."""
    outcomes = await collect(["ok-1", "ok-1", "../evil", "ok-2", "a?b"], api_settings)
    skipped = [o for o in outcomes if isinstance(o, Skipped)]
    assert {(o.run_id, o.reason) for o in skipped} == {
        ("ok-1", "duplicate"),
        ("../evil", "invalid"),
        ("a?b", "invalid"),
    }
    assert sorted(r.run_id for r in emulator.stats.requests) == ["ok-1", "ok-2"]


async def test_dry_run_sends_nothing(emulator):
    """A dry run plans every valid new ID and makes no request at all, needing no credentials."""
    outcomes = await collect(["d1", "d2", "d1"], None, dry_run=True)
    assert [type(o) for o in outcomes].count(Planned) == 2
    assert emulator.stats.requests == []


async def test_refusals_fail_and_unknown_runs_fail(emulator, api_settings):
    """A non-retriable run and an unknown run each fail with the API's code and message."""
    emulator.auto_create = False
    emulator.add_run(Run(id="done-1", flow_id="f", status="success", output_records=10))
    outcomes = {o.run_id: o for o in await collect(["done-1", "nope-1"], api_settings)}
    refused, unknown = outcomes["done-1"], outcomes["nope-1"]
    assert isinstance(refused, Failed) and refused.status == 400 and "FLOW-" in refused.error
    assert isinstance(unknown, Failed) and unknown.status == 404
    assert emulator.stats.retriggers == {}


async def test_safe_faults_are_retried_and_unsafe_ones_reported_uncertain(emulator, api_settings):
    """429/503 are retried to success; 500, drops and garbled 200s after applying are uncertain."""
    emulator.faults = Faults(
        retry_after=0,
        script={
            "t": ["throttle", "unavailable", "ok"],
            "e": ["error_after"],
            "d": ["drop_after"],
            "g": ["garbled_after"],
        },
    )
    outcomes = {o.run_id: o for o in await collect(["t", "e", "d", "g"], api_settings)}
    assert isinstance(outcomes["t"], Retriggered) and outcomes["t"].attempts == 3
    for run_id in "edg":
        assert isinstance(outcomes[run_id], Uncertain), outcomes[run_id]
        assert outcomes[run_id].attempts == 1
    assert outcomes["e"].status == 500 and outcomes["g"].status == 200
    assert outcomes["d"].status is None
    assert emulator.stats.retriggers == {"t": 1, "e": 1, "d": 1, "g": 1}


@pytest.mark.slow
async def test_safe_retries_exhausted_give_failed(emulator, api_settings):
    """When every attempt is throttled, the run fails with the last error and is never applied."""
    emulator.faults = Faults(retry_after=0, script={"x": ["throttle"] * 3})
    [outcome] = await collect(["x"], api_settings, max_attempts=3)
    assert isinstance(outcome, Failed)
    assert (outcome.status, outcome.attempts) == (429, 3)
    assert "429050" in outcome.error
    assert emulator.stats.retriggers == {}


async def test_retry_uncertain_resends(emulator, api_settings):
    """With retry_uncertain, a 500 is sent again (and so applied twice, by the user's choice)."""
    emulator.faults = Faults(script={"u": ["error_after", "ok"]})
    [outcome] = await collect(["u"], api_settings, retry_uncertain=True)
    assert isinstance(outcome, Retriggered) and outcome.attempts == 2


async def test_stop_interrupts_what_was_not_sent(emulator, api_settings):
    """After stop(), input stops, IDs read but unsent are interrupted, and nothing is lost."""
    ids = [f"s{n}" for n in range(50)]
    outcomes = []
    async with bulkretry.retrigger(ids, api_settings, JobSettings(rate=20), backoff=FAST) as job:
        async for outcome in job:
            outcomes.append(outcome)
            if len(outcomes) == 5:
                job.stop()
    read = [o.run_id for o in outcomes]
    assert len(set(read)) == len(read) < len(ids)
    assert set(read) == set(ids[: len(read)])  # every ID read has exactly one outcome
    interrupted = [o for o in outcomes if isinstance(o, Skipped) and o.reason == "interrupted"]
    assert interrupted
    sent = {r.run_id for r in emulator.stats.requests}
    assert not sent & {o.run_id for o in interrupted}


async def test_repeated_auth_refusals_stop_the_job(emulator, api_settings):
    """A wrong org makes the first requests fail; the rest fail without being sent."""
    wrong = replace(api_settings, org_id="WRONG@AdobeOrg")
    outcomes = await collect([f"w{n}" for n in range(40)], wrong, concurrency=2)
    assert all(isinstance(o, Failed) for o in outcomes)
    assert len(emulator.stats.requests) <= 5
    not_sent = [o for o in outcomes if o.attempts == 0]
    assert len(not_sent) >= 35
    assert all("403025" in o.error and "not attempted" in o.error for o in not_sent)


@pytest.mark.slow
async def test_the_rate_cap_holds_in_every_one_second_window(emulator, api_settings):
    """At rate 20, no one-second window at the server sees more than 20 request starts."""
    await collect([f"r{n}" for n in range(50)], api_settings, rate=20)
    times = sorted(r.at for r in emulator.stats.requests)
    assert len(times) == 50
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t < start + 1.0)
        assert in_window <= 20
    assert times[-1] - times[0] >= 49 / 20  # evenly spaced: no burst at start


async def test_async_iterables_feed_the_pipeline(emulator, api_settings):
    """The API accepts an async iterable, and the first request leaves before it ends."""
    sent_before_end = anyio.Event()

    async def slow_ids():
        yield "early-1"
        with anyio.fail_after(5):
            while not emulator.stats.requests:  # noqa: ASYNC110 - polling another loop's state
                await anyio.sleep(0.01)
        sent_before_end.set()
        yield "late-1"

    outcomes = await collect(slow_ids(), api_settings)
    assert sent_before_end.is_set()
    assert {o.run_id for o in outcomes} == {"early-1", "late-1"}


async def test_an_hours_long_retry_after_ends_the_retries(emulator, api_settings):
    """Retry-After: 3600 is not waited out: the run fails (not applied) and says why."""
    emulator.faults = Faults(retry_after=3600, script={"slow-1": ["throttle"]})
    with anyio.fail_after(10):
        [outcome] = await collect(["slow-1"], api_settings)
    assert isinstance(outcome, Failed) and outcome.attempts == 1
    assert "asked to wait 3600s, over the 300s limit" in outcome.error
    assert emulator.stats.retriggers == {}


async def test_once_maybe_applied_a_run_stays_uncertain(emulator, api_settings):
    """--retry-uncertain: a 500 then throttling to the limit ends uncertain, never failed."""
    emulator.faults = Faults(retry_after=0, script={"m-1": ["error_after", "throttle", "throttle"]})
    [outcome] = await collect(["m-1"], api_settings, retry_uncertain=True, max_attempts=3)
    assert isinstance(outcome, Uncertain) and outcome.attempts == 3
    assert outcome.status == 429


async def test_after_the_breaker_trips_the_rest_fail_without_waiting(emulator, api_settings):
    """After three refusals stop the job, the other IDs get their lines at once, not at --rate."""
    wrong = replace(api_settings, org_id="WRONG@AdobeOrg")
    with anyio.fail_after(3):  # 30 IDs at rate 4 would take 7 s if each waited for a slot
        outcomes = await collect([f"b{n}" for n in range(30)], wrong, rate=4, concurrency=1)
    assert len(emulator.stats.requests) == 3
    assert sum(o.attempts == 0 for o in outcomes) == 27
