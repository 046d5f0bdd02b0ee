"""`retry --wait` through the library API: new runs followed to their end over loopback."""

import itertools
import time

import pytest

import bulkretry
from bulkretry import Cadence, Finished, FollowSettings, JobSettings, Retriggered
from bulkretry._backoff import Backoff
from bulkretry.emulator import Faults, Lifecycle, Run

pytestmark = pytest.mark.anyio

TRANSIENT = (("CONNECTOR-1001-500", "The connection to the source failed: read timed out."),)
MAPPING = (("MAPPER-2101-400", "Field 'email' is not in the target schema."),)
# One hundredth of the real defaults: 5 s first look, at most every 5 min.
SCALED = Cadence.starting_at(0.05)


def seed(emulator, recovering=("ok-1", "ok-2", "ok-3"), poison=("bad-1",)):
    """Failed runs that recover when re-triggered, and poison runs that fail every time."""
    for run_id in recovering:
        emulator.add_run(Run(id=run_id, flow_id="flow", input_records=40, errors=TRANSIENT))
    for run_id in poison:
        emulator.add_run(Run(id=run_id, flow_id="flow", errors=MAPPING, poison=True))


async def follow(run_ids, api_settings, *, wait_s=5.0, cadence=SCALED, **settings):
    """Run a --wait job through the public API; its lines in order."""
    job_settings = JobSettings(**({"rate": 0} | settings))
    follow = FollowSettings(timeout=wait_s, cadence=cadence)
    async with bulkretry.retrigger(
        run_ids, api_settings, job_settings, follow=follow, backoff=Backoff(base=0)
    ) as job:
        return [line async for line in job]


def cadence_polls(duration, cadence):
    """How many polls the cadence makes before it sees a run of ``duration`` seconds end."""
    age, polls = 0.0, 0
    while age < duration:
        age += cadence.delay(age)
        polls += 1
    return polls


def test_cadence_starts_after_seconds_and_backs_off_to_minutes():
    """The first look is after 5 s; looks grow apart with the run's age, never past 5 min."""
    cadence = Cadence()
    assert cadence.delay(0) == 5.0
    assert cadence.delay(10) == 5.0
    assert cadence.delay(60) == 30.0
    assert cadence.delay(3600) == 300.0
    assert [cadence_polls(seconds, cadence) for seconds in (3, 10, 60)] == [1, 2, 7]
    assert cadence_polls(6 * 3600, cadence) <= 90  # a six-hour run: about ninety polls
    assert Cadence.starting_at(0.05) == Cadence(first=0.05, cap=3.0)


@pytest.mark.parametrize("make", [lambda: FollowSettings(timeout=0), lambda: Cadence(first=0)])
def test_follow_settings_refuse_nonsense(make):
    """A zero timeout or a zero first look is a usage error."""
    with pytest.raises(bulkretry.UsageError):
        make()


async def test_recovering_and_poison_runs_each_get_one_finished_line(emulator, api_settings):
    """Each retriggered line is followed by one finished line: success, or failed with its code."""
    emulator.lifecycle = Lifecycle(seconds=0.1)
    seed(emulator)
    lines = await follow(["ok-1", "ok-2", "bad-1", "ok-3"], api_settings)
    retriggered = {line.run_id: line for line in lines if isinstance(line, Retriggered)}
    finished = {line.run_id: line for line in lines if isinstance(line, Finished)}
    assert set(retriggered) == set(finished) == {"ok-1", "ok-2", "ok-3", "bad-1"}
    for run_id, line in finished.items():
        assert lines.index(retriggered[run_id]) < lines.index(line)
        assert line.new_run_id == retriggered[run_id].new_run_id
        assert 0.1 <= line.duration_s < 2
    assert {finished[r].status for r in ("ok-1", "ok-2", "ok-3")} == {"success"}
    assert (finished["ok-1"].records, finished["ok-1"].error) == (40, None)
    bad = finished["bad-1"]
    assert (bad.status, bad.records, bad.level) == ("failed", 0, "error")
    assert bad.error == "MAPPER-2101-400: Field 'email' is not in the target schema."


async def test_a_poll_answered_with_the_run_itself_is_understood(emulator, api_settings):
    """GET /runs/{id} answering the bare run (OpenAPI file, proxies), not {"items": [run]}."""
    emulator.lifecycle = Lifecycle(seconds=0.05)
    emulator.run_answer = "run"
    seed(emulator, recovering=("ok-1",), poison=("bad-1",))
    lines = await follow(["ok-1", "bad-1"], api_settings, wait_s=3)
    finished = {line.run_id: line for line in lines if isinstance(line, Finished)}
    assert (finished["ok-1"].status, finished["ok-1"].records) == ("success", 40)
    assert (finished["bad-1"].status, finished["bad-1"].error) == ("failed", ": ".join(MAPPING[0]))


async def test_a_run_answered_404_poll_after_poll_is_given_up(emulator, api_settings):
    """Five 404s in a row for a new run: one timed-out line with the API's words, no more polls."""
    emulator.lifecycle = Lifecycle(seconds=None)
    seed(emulator, recovering=("gone",), poison=())
    emulator.faults = Faults(get_script=["not_found"] * 9)
    started = time.monotonic()
    lines = await follow(["gone"], api_settings, wait_s=30)
    (finished,) = [line for line in lines if isinstance(line, Finished)]
    assert (finished.status, finished.records) == ("timed-out", 0)
    assert finished.error.startswith("FLOW-1439-404: The requested runs resource ")
    assert finished.new_run_id in finished.error
    assert len([r for r in emulator.stats.requests if r.method == "GET"]) == 5
    assert time.monotonic() - started < 5  # not the 30 s --wait-timeout


async def test_a_new_run_answered_404_a_few_times_is_still_followed(emulator, api_settings):
    """Four 404s (a run the API does not show yet), then the run: followed to its end."""
    emulator.lifecycle = Lifecycle(seconds=0.05)
    seed(emulator, recovering=("late",), poison=())
    emulator.faults = Faults(get_script=["not_found"] * 4)
    lines = await follow(["late"], api_settings)
    assert [line.status for line in lines if isinstance(line, Finished)] == ["success"]


async def test_runs_still_going_at_the_timeout_are_timed_out(emulator, api_settings):
    """A run that has not ended when --wait-timeout passes gets status timed-out, no error."""
    emulator.lifecycle = Lifecycle(seconds=None)
    seed(emulator, recovering=("slow",), poison=())
    started = time.monotonic()
    lines = await follow(["slow"], api_settings, wait_s=0.3)
    (finished,) = [line for line in lines if isinstance(line, Finished)]
    assert (finished.status, finished.error, finished.level) == ("timed-out", None, "warning")
    assert 0.3 <= finished.duration_s < 1
    assert time.monotonic() - started < 1.5


async def test_polls_per_run_stay_a_handful(emulator, api_settings):
    """Runs of a few (scaled) seconds cost a few polls each, one at a time per run."""
    emulator.lifecycle = Lifecycle(seconds=0.08)  # 8 s at the real scale
    ids = [f"r-{n}" for n in range(30)]
    seed(emulator, recovering=ids, poison=())
    lines = await follow(ids, api_settings, concurrency=8)
    new_runs = {line.new_run_id for line in lines if isinstance(line, Finished)}
    assert len(new_runs) == 30
    polls = [r for r in emulator.stats.requests if r.method == "GET"]
    per_run = {run_id: sum(1 for r in polls if r.run_id == run_id) for run_id in new_runs}
    assert set(per_run) == new_runs
    assert max(per_run.values()) <= 3
    for run_id in new_runs:  # never two polls of one run closer than the first delay
        times = sorted(r.at for r in polls if r.run_id == run_id)
        assert all(b - a >= SCALED.first * 0.9 for a, b in itertools.pairwise(times))


async def test_a_poll_that_fails_is_retried_and_the_run_still_finishes(emulator, api_settings):
    """Throttled or unavailable polls go through the one attempt loop and then succeed."""
    emulator.lifecycle = Lifecycle(seconds=0.05)
    seed(emulator, recovering=("ok-1",), poison=())
    script = ("unavailable", "error_after", "unavailable")  # a 429 would slow the job: not here
    emulator.faults = Faults(get_script=script, retry_after=None)
    lines = await follow(["ok-1"], api_settings)
    assert [line.status for line in lines if isinstance(line, Finished)] == ["success"]
    polls = [r for r in emulator.stats.requests if r.method == "GET"]
    assert len(polls) >= 4  # three refused or lost, then the answer


async def test_polls_refused_for_the_caller_stop_the_following(emulator, api_settings):
    """Polls refused as for the caller (a gateway 403) three times in a row: stop asking.

    Each run still followed then gets one ``timed-out`` line saying why (its end is unknown).
    """
    emulator.lifecycle = Lifecycle(seconds=None)
    ids = ["p-1", "p-2", "p-3", "p-4"]
    seed(emulator, recovering=ids, poison=())
    lines = []
    started = time.monotonic()
    follow_settings = FollowSettings(timeout=30, cadence=SCALED)
    async with bulkretry.retrigger(
        ids, api_settings, JobSettings(rate=0), follow=follow_settings, backoff=Backoff(base=0)
    ) as job:
        async for line in job:
            lines.append(line)
            if sum(isinstance(line, Retriggered) for line in lines) == len(ids):
                emulator.api_key = "revoked-key"  # from now on: 403003 "Api Key is invalid"
    assert time.monotonic() - started < 5  # not the 30 s timeout
    finished = [line for line in lines if isinstance(line, Finished)]
    assert sorted(line.run_id for line in finished) == ids
    for line in finished:
        assert line.status == "timed-out"
        assert line.error.startswith("polls refused 3 times in a row (403003: Api Key is invalid")
    polls = [r for r in emulator.stats.requests if r.method == "GET"]
    assert 3 <= len(polls) <= len(ids)  # those in flight when the third refusal came may land


@pytest.mark.slow
async def test_polls_pass_the_same_rate_limit_as_re_triggers(emulator, api_settings):
    """--rate counts polls too: no 11 requests of any kind start within one second at --rate 10."""
    emulator.lifecycle = Lifecycle(seconds=0.6)
    ids = [f"ok-{n}" for n in range(5)]
    seed(emulator, recovering=ids, poison=())
    lines = await follow(ids, api_settings, rate=10)
    assert [line.status for line in lines if isinstance(line, Finished)] == ["success"] * 5
    starts = sorted(r.at for r in emulator.stats.requests)
    assert len(starts) > 11  # unpaced, the polls would make over thirty in 0.6 s
    assert all(later - first >= 0.98 for first, later in zip(starts, starts[10:], strict=False))
