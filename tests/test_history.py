"""The history store on a real SQLite file and a real PostgreSQL server: claims, lineage, reads."""

import socket
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest

from bulkretry import Failed, Retriggered, Skipped, Uncertain, UsageError
from bulkretry._errors import HistoryError
from bulkretry._history import GroupCommit, History
from bulkretry._history_location import HistoryLocation, history_location, mask_url
from bulkretry._history_sql import SCHEMA_VERSION
from bulkretry._lineage import Claim, ClaimPolicy, tally
from bulkretry._text import Secret

pytestmark = pytest.mark.anyio

POLICY = ClaimPolicy()


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    """A fresh history of each kind."""
    if request.param == "sqlite":
        return HistoryLocation(path=tmp_path / "state" / "history.sqlite3")
    return HistoryLocation(url=Secret(request.getfixturevalue("pg_url")))


async def answered(history, outcomes, claimed, policy):
    """A group commit's answers, per claim."""
    return (await history.commit(GroupCommit(outcomes=outcomes, claims=claimed), policy)).claims


def claims(*run_ids, flow_id=None):
    """Claims for these run IDs."""
    return [Claim(run_id=run_id, flow_id=flow_id) for run_id in run_ids]


async def test_a_claim_wins_once_and_the_outcome_decides_the_next(location):
    """A fresh run is ours; re-triggered → already-retriggered; failed → ours again."""
    async with await History.open(location, org="o", sandbox="s") as history:
        assert await answered(history, [], claims("a", "b"), POLICY) == [None, None]
        done = [
            Retriggered(run_id="a", new_run_id="a-new", etag='"e1"', attempts=1, status=200),
            Failed(run_id="b", status=404, error="gone", attempts=1),
        ]
        again = await answered(history, done, claims("a", "b"), POLICY)
        assert again == [
            Skipped(run_id="a", reason="already-retriggered", new_run_id="a-new", etag='"e1"'),
            None,
        ]


async def test_an_intent_without_outcome_is_uncertain_until_asked(location):
    """A crashed job's intent: uncertain; with --retry-uncertain, once its lease ran out, ours."""
    async with await History.open(location, org="o", sandbox="s") as first:
        await answered(first, [], claims("x"), ClaimPolicy(lease_s=0))
    async with await History.open(location, org="o", sandbox="s") as second:
        [refused] = await answered(second, [], claims("x"), POLICY)
        assert isinstance(refused, Uncertain) and "intent with no outcome" in refused.error
        retry = ClaimPolicy(retry_uncertain=True)
        assert await answered(second, [], claims("x"), retry) == [None]


async def test_an_outcome_never_lands_on_a_claim_another_job_holds_now(location):
    """A job whose lease ran out and was taken over writes no outcome over the new claim."""
    async with (
        await History.open(location, org="o", sandbox="s") as slow,
        await History.open(location, org="o", sandbox="s") as other,
    ):
        await answered(slow, [], claims("x"), ClaimPolicy(lease_s=0))
        await anyio.sleep(0.01)  # past the lease
        assert await answered(other, [], claims("x"), ClaimPolicy(retry_uncertain=True)) == [None]
        done = Retriggered(run_id="x", new_run_id="x-2", etag=None, attempts=1, status=200)
        await answered(slow, [done], [], POLICY)
        [held] = await answered(slow, [], claims("x"), POLICY)
    assert isinstance(held, Uncertain) and "claimed by a running bulkretry job" in held.error


async def test_a_live_jobs_claim_is_never_taken_over(location):
    """Another job's unexpired intent is refused even with --retry-uncertain and --again."""
    async with (
        await History.open(location, org="o", sandbox="s") as live,
        await History.open(location, org="o", sandbox="s") as other,
    ):
        await answered(live, [], claims("held"), POLICY)
        forceful = ClaimPolicy(retry_uncertain=True, again=True)
        [refused] = await answered(other, [], claims("held"), forceful)
        assert isinstance(refused, Uncertain) and "may be sending it now" in refused.error


async def test_again_takes_a_retriggered_or_uncertain_run(location):
    """--again re-triggers what the history says was (maybe) re-triggered."""
    async with await History.open(location, org="o", sandbox="s") as history:
        await answered(history, [], claims("r", "u"), POLICY)
        settled = [
            Retriggered(run_id="r", new_run_id="r2", etag=None, attempts=1, status=200),
            Uncertain(run_id="u", status=502, error="bad gateway", attempts=1),
        ]
        refused = await answered(history, settled, claims("r", "u"), POLICY)
        assert [type(outcome) for outcome in refused] == [Skipped, Uncertain]
        assert await answered(history, [], claims("r", "u"), ClaimPolicy(again=True)) == [
            None,
            None,
        ]


async def test_lineage_counts_generations_and_stops_at_the_limit(location):
    """Each new run is its parent's generation + 1; the limit skips the run, naming the original."""
    async with await History.open(location, org="o", sandbox="s") as history:
        run = "g0"
        for generation in range(3):
            assert await answered(history, [], claims(run, flow_id="flow-1"), POLICY) == [None]
            new = f"g{generation + 1}"
            await answered(
                history,
                [Retriggered(run_id=run, new_run_id=new, etag=None, attempts=1, status=200)],
                [],
                POLICY,
            )
            run = new
        [limit] = await answered(history, [], claims("g3"), POLICY)
        assert limit == Skipped(
            run_id="g3",
            reason="generation-limit",
            detail="generation 3 of g0: a person should look",
        )
        lineage = await history.lineage(["g0", "g2", "unknown"])
        assert set(lineage) == {"g0", "g2"}
        assert (lineage["g2"].generation, lineage["g2"].original_run_id) == (2, "g0")
        assert lineage["g0"].retriggered and lineage["g2"].retriggered


async def test_one_history_keeps_orgs_and_sandboxes_apart(location):
    """The key is (org, sandbox, run_id): the same run ID elsewhere is a different run."""
    async with await History.open(location, org="o", sandbox="prod") as prod:
        await answered(prod, [], claims("same"), POLICY)
        await answered(
            prod,
            [Retriggered(run_id="same", new_run_id="n", etag=None, attempts=1, status=200)],
            [],
            POLICY,
        )
    async with await History.open(location, org="o", sandbox="dev") as dev:
        assert await answered(dev, [], claims("same"), POLICY) == [None]


async def test_concurrent_jobs_claim_each_run_once(location):
    """Two jobs claiming the same 200 run IDs at once: every run is granted to exactly one."""
    ids = [f"run-{n}" for n in range(200)]
    granted: list[str] = []

    async def job():
        async with await History.open(location, org="o", sandbox="s") as history:
            for start in range(0, len(ids), 20):
                batch = ids[start : start + 20]
                answers = await answered(history, [], claims(*batch), POLICY)
                granted.extend(
                    run for run, answer in zip(batch, answers, strict=True) if answer is None
                )

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(job)
        tasks.start_soon(job)
    assert sorted(granted) == sorted(ids)


async def test_follow_through_reads_back_chains_and_counts(location):
    """pending, record_finished, chains and tally: what `status` shows, per original and flow."""
    async with await History.open(location, org="o", sandbox="s") as history:
        await answered(history, [], claims("ok", "bad", "wait", flow_id="f1"), POLICY)
        await answered(
            history,
            [
                Retriggered(run_id="ok", new_run_id="ok-2", etag=None, attempts=1, status=200),
                Retriggered(run_id="bad", new_run_id="bad-2", etag=None, attempts=1, status=200),
                Retriggered(run_id="wait", new_run_id="wait-2", etag=None, attempts=1, status=200),
            ],
            [],
            POLICY,
        )
        assert {run.run_id for run in await history.pending()} == {"ok-2", "bad-2", "wait-2"}
        await history.record_finished("ok-2", status="success", records=12)
        await history.record_finished("bad-2", status="failed", error="CONNECTOR-1001-500: down")
        assert [run.run_id for run in await history.pending()] == ["wait-2"]
        chains = {chain.run_id: chain for chain in await history.chains(since=None, flow_ids=())}
        assert chains["ok"].latest_run_id == "ok-2" and chains["ok"].latest_status == "success"
        assert chains["bad"].error == "CONNECTOR-1001-500: down"
        assert chains["wait"].latest_status == "pending" and chains["wait"].generation == 1
        assert await history.chains(since=None, flow_ids=("other",)) == []
        counts = {(c.flow_id, c.error_code): c for c in tally(list(chains.values()))}
        assert counts["f1", None].recovered == 1 and counts["f1", None].pending == 1
        assert counts["f1", "CONNECTOR-1001-500"].failed_again == 1


async def test_a_newer_schema_is_refused_in_one_line(location):
    """A history written by a newer bulkretry: a clear usage error, not a guess."""
    async with await History.open(location, org="o", sandbox="s") as history:
        await answered(history, [], claims("a"), POLICY)
    if location.path is not None:
        with sqlite3.connect(location.path) as raw:
            raw.execute("UPDATE bulkretry_schema SET value = '99'")
    else:
        import psycopg  # noqa: PLC0415 - PostgreSQL tests only

        with psycopg.connect(location.url.reveal(), autocommit=True) as raw:
            raw.execute("UPDATE bulkretry_schema SET value = '99'")
    with pytest.raises(
        UsageError, match=f"schema version 99, newer .*knows \\({SCHEMA_VERSION}\\)"
    ):
        await History.open(location, org="o", sandbox="s")


async def test_a_dry_run_creates_nothing(tmp_path):
    """Opening for reading only: a missing file stays missing and reads as empty."""
    path = tmp_path / "none" / "history.sqlite3"
    location = HistoryLocation(path=path)
    async with await History.open(location, org="o", sandbox="s", write=False) as history:
        assert await history.peek("a", POLICY) is None
    assert not path.parent.exists()


async def test_a_missing_history_answers_a_dry_run_without_a_thread(tmp_path):
    """No file to read: every peek answers at once, with no hop to a thread (no checkpoint)."""
    location = HistoryLocation(path=tmp_path / "history.sqlite3")
    async with await History.open(location, org="o", sandbox="s", write=False) as history:
        answers = []
        with anyio.CancelScope() as scope:
            scope.cancel()  # anything that waits, a thread hop included, is cancelled here
            answers = [await history.peek(f"r{n}", POLICY) for n in range(3)]
        assert answers == [None, None, None]


async def test_a_number_sqlite_cannot_store_is_a_history_error(tmp_path):
    """A value too large for SQLite stops the job in one line, not with a traceback."""
    location = HistoryLocation(path=tmp_path / "history.sqlite3")
    async with await History.open(location, org="o", sandbox="s") as history:
        with pytest.raises(HistoryError, match="too large"):
            await history.record_finished("n1", status="success", records=2**64)


async def test_a_file_that_is_not_sqlite_is_a_usage_error(tmp_path):
    """A history path holding something else: one line saying so."""
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"not a database at all, just text\n" * 40)
    with pytest.raises(UsageError, match="not a SQLite database"):
        await History.open(HistoryLocation(path=path), org="o", sandbox="s")


async def test_a_wrong_password_is_one_line_without_the_password(pg_server):
    """PostgreSQL refusing the password: UsageError naming the history, password masked."""
    url = pg_server.url(password="wrong-secret-77")
    with pytest.raises(UsageError) as caught:
        await History.open(HistoryLocation(url=Secret(url)), org="o", sandbox="s")
    text = str(caught.value)
    assert "password authentication failed" in text and "wrong-secret-77" not in text
    assert "***@127.0.0.1" in text


def test_location_comes_from_flag_env_or_xdg(tmp_path):
    """--history > BULKRETRY_HISTORY > $XDG_STATE_HOME/bulkretry/history.sqlite3; 'off' is None."""
    env = {"XDG_STATE_HOME": str(tmp_path), "BULKRETRY_HISTORY": "/env/h.db"}
    assert history_location("off", env) is None
    assert history_location("/flag.db", env) == HistoryLocation(path=Path("/flag.db"))
    assert history_location(None, env) == HistoryLocation(path=Path("/env/h.db"))
    default = history_location(None, {"XDG_STATE_HOME": str(tmp_path)})
    assert default == HistoryLocation(path=tmp_path / "bulkretry" / "history.sqlite3")
    url = history_location(None, {"BULKRETRY_HISTORY": "postgresql://u:pw9@h/db"})
    assert url is not None and "pw9" not in repr(url) and "pw9" not in str(url)
    with pytest.raises(UsageError, match="mysql://"):
        history_location("mysql://u@h/db", {})


def test_mask_url_hides_passwords_in_both_places():
    """user:password@ and a password= parameter are both masked."""
    masked = mask_url("postgresql://me:s3cret@db:5432/x?sslmode=require&password=other")
    assert "s3cret" not in masked and "other" not in masked
    assert masked.startswith("postgresql://me:***@db:5432/x")


async def test_an_end_recorded_before_the_lineage_keeps_both(location):
    """record_finished may land before the re-trigger's outcome: lineage and end both stay."""
    async with await History.open(location, org="o", sandbox="s") as history:
        await answered(history, [], claims("early", flow_id="f9"), POLICY)
        await history.record_finished("early-2", status="success", records=3)
        done = Retriggered(run_id="early", new_run_id="early-2", etag=None, attempts=1, status=200)
        await answered(history, [done], [], POLICY)
        [chain] = await history.chains(since=None, flow_ids=())
        assert (chain.latest_run_id, chain.latest_status, chain.generation) == (
            "early-2",
            "success",
            1,
        )
        assert chain.flow_id == "f9" and await history.pending() == []


async def test_a_dead_local_jobs_claim_is_taken_without_waiting(location):
    """A job killed on this host: --retry-uncertain takes its claims at once, not after a lease."""
    ended = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    dead_pid = int(ended.stdout)
    async with await History.open(location, org="o", sandbox="s") as crashed:
        crashed.owner = f"{socket.gethostname()}:{dead_pid}:gone"
        await answered(crashed, [], claims("orphan"), POLICY)
    async with await History.open(location, org="o", sandbox="s") as later:
        [plain] = await answered(later, [], claims("orphan"), POLICY)
        assert isinstance(plain, Uncertain) and "intent with no outcome" in plain.error
        assert await answered(later, [], claims("orphan"), ClaimPolicy(retry_uncertain=True)) == [
            None
        ]


async def test_one_commit_records_many_outcomes_and_their_lineage(location):
    """A group commit: the last outcome of a run counts; a new run ID answered twice goes to one."""
    async with await History.open(location, org="o", sandbox="s") as history:
        await answered(history, [], claims("a", "b", "c", "d", flow_id="f"), POLICY)
        outcomes = [
            Failed(run_id="a", status=500, error="first try", attempts=1),
            Retriggered(run_id="a", new_run_id="a-2", etag='"e"', attempts=2, status=200),
            Retriggered(run_id="c", new_run_id="same-new", etag=None, attempts=1, status=200),
            Retriggered(run_id="b", new_run_id="same-new", etag=None, attempts=1, status=200),
            Uncertain(run_id="d", status=None, error="timed out", attempts=1),
        ]
        answers = await answered(history, outcomes, claims("a", "b", "d", "e"), POLICY)
        assert answers[0] == Skipped(
            run_id="a", reason="already-retriggered", new_run_id="a-2", etag='"e"'
        )
        assert answers[1].reason == "already-retriggered"  # type: ignore[union-attr]
        assert isinstance(answers[2], Uncertain) and answers[2].error == "timed out"
        assert answers[3] is None
        lineage = await history.lineage(["a-2", "same-new"])
        assert (lineage["a-2"].generation, lineage["a-2"].original_run_id) == (1, "a")
        assert lineage["same-new"].original_run_id == "b"  # the first by run ID keeps it
