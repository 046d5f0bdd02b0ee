import sqlite3
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime

import anyio
import pytest

from bulkretry import Failed, JobSettings, Retriggered, Skipped, Uncertain
from bulkretry import _history_ledger as history_ledger_module
from bulkretry import _history_sql as history_sql
from bulkretry._errors import HistoryError
from bulkretry._history_commits import WRITER_AFTER
from bulkretry._history_ledger import HistoryLedger
from bulkretry._history_location import HistoryLocation
from bulkretry._open_ledger import open_ledger

KEY = ("ORG@AdobeOrg", "prod")


@pytest.mark.anyio
async def test_a_claim_outlasts_an_op_switch_resend_queued_behind_the_rate(tmp_path):
    """The lease covers the request, a wait behind --concurrency others at --rate, the resend."""
    path = tmp_path / "history.sqlite3"
    async with serving(path, rate=0.1, concurrency=10, timeout=30.0) as ledger:
        assert await ledger.claim("run-1", None) is None
    with sqlite3.connect(path) as db:
        claimed, lease = db.execute(
            "SELECT claimed_at, lease_until FROM bulkretry_runs WHERE run_id = 'run-1'"
        ).fetchone()
    held = datetime.fromisoformat(lease) - datetime.fromisoformat(claimed)
    # 30 s request + 10 / 0.1 s queue + 30 s resend, and the margin on top.
    assert held.total_seconds() >= 30 + 100 + 30


@asynccontextmanager
async def serving(path, on_failure=lambda _: None, *, writer_after=WRITER_AFTER, **settings):
    """A job's history ledger on ``path``, its writer running until the block ends."""
    job = {"rate": 0, "concurrency": 8} | settings
    async with AsyncExitStack() as stack:
        settings = JobSettings(**job, history=HistoryLocation(path=path))
        ledger = await open_ledger(stack, settings, KEY, on_failure, writer_after=writer_after)
        assert isinstance(ledger, HistoryLedger)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ledger.serve)
            yield ledger
            tasks.cancel_scope.cancel()


@pytest.mark.anyio
async def test_claims_made_together_share_a_commit_each_with_its_answer(tmp_path):
    """Workers claiming at once each hear their own run's answer; flush makes outcomes durable."""
    path = tmp_path / "history.sqlite3"
    answers: dict[str, object] = {}
    async with serving(path) as ledger:
        assert await ledger.claim("done-before", None) is None
        ledger.record(
            Retriggered(run_id="done-before", new_run_id="n0", etag=None, attempts=1, status=200)
        )

        async def claim(run_id):
            answers[run_id] = await ledger.claim(run_id, "flow")
            if answers[run_id] is None:
                new = f"{run_id}-new"
                ledger.record(
                    Retriggered(run_id=run_id, new_run_id=new, etag=None, attempts=1, status=200)
                )

        async with anyio.create_task_group() as workers:
            for run_id in ("done-before", *(f"run-{n}" for n in range(20))):
                workers.start_soon(claim, run_id)
        await ledger.flush()
    assert isinstance(answers.pop("done-before"), Skipped)
    assert set(answers.values()) == {None}
    with sqlite3.connect(path) as db:
        states = dict(
            db.execute("SELECT run_id, state FROM bulkretry_runs WHERE state IS NOT NULL")
        )
        children = db.execute("SELECT count(*) FROM bulkretry_runs WHERE generation = 1").fetchone()
    assert states == {"done-before": "retriggered"} | {f"run-{n}": "retriggered" for n in range(20)}
    assert children == (21,)


@pytest.mark.anyio
async def test_a_database_failing_under_a_batch_fails_each_claim_and_stops_once(tmp_path):
    """Every claim in the failed commit hears the error; the job is told once; nothing more goes."""
    path = tmp_path / "history.sqlite3"
    failures: list[str] = []
    errors: list[HistoryError] = []
    async with serving(path, failures.append) as ledger:
        assert await ledger.claim("before", None) is None
        with sqlite3.connect(path) as other:  # the database breaks under the job
            other.execute("DROP TABLE bulkretry_runs")

        async def claim(run_id):
            try:
                await ledger.claim(run_id, None)
            except HistoryError as error:
                errors.append(error)

        async with anyio.create_task_group() as workers:
            for n in range(10):
                workers.start_soon(claim, f"run-{n}")
        assert len(errors) == 10
        assert len(failures) == 1 and "no such table" in failures[0]
        with pytest.raises(HistoryError):
            await ledger.claim("later", None)
        with pytest.raises(HistoryError):
            ledger.record(Failed(run_id="before", status=500, error="x", attempts=1))
        await ledger.flush()  # returns: nothing more can be written


@pytest.mark.anyio
async def test_an_unexpected_commit_failure_stops_the_job_like_a_database_one(
    tmp_path, monkeypatch
):
    """A commit that fails with anything at all (here a bug) stops the job; flush says so."""
    path = tmp_path / "history.sqlite3"
    failures: list[str] = []

    def broken(*_: object) -> list[object]:
        raise RuntimeError("a bug in the writer")

    async with serving(path, failures.append) as ledger:
        assert await ledger.claim("only-outcomes", None) is None
        monkeypatch.setattr(history_sql, "_outcome_values", broken)
        ledger.record(
            Retriggered(run_id="only-outcomes", new_run_id="n1", etag=None, attempts=1, status=200)
        )
        with pytest.raises(HistoryError, match="RuntimeError: a bug in the writer"):
            await ledger.flush()
    assert len(failures) == 1 and "a bug in the writer" in failures[0]


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_history_file_removed_or_replaced_mid_job_stops_it(tmp_path, how):
    """Claims are never written into a file that is gone: the job stops, nothing more is sent."""
    path = tmp_path / "history.sqlite3"
    failures: list[str] = []
    async with serving(path, failures.append) as ledger:
        assert await ledger.claim("before", None) is None
        copy = tmp_path / "copy.sqlite3"
        copy.write_bytes(path.read_bytes())
        path.unlink()
        if how == "replaced":
            copy.rename(path)
        with pytest.raises(HistoryError, match="removed or replaced while this job ran"):
            await ledger.claim("after", None)
    assert len(failures) == 1


@pytest.mark.anyio
async def test_a_jobs_sqlite_history_is_checkpointed_beside_the_writer(tmp_path):
    """The writer process copies the WAL back into the file, on a thread of its own."""
    path = tmp_path / "history.sqlite3"
    async with serving(path, writer_after=0) as ledger:
        before = path.stat().st_size
        for n in range(200):
            assert await ledger.claim(f"run-{n}", None) is None
            ledger.record(Failed(run_id=f"run-{n}", status=500, error="x", attempts=1))
        await ledger.flush()
        for _ in range(150):  # a fraction of a second: checkpoints come every 250 ms
            if path.stat().st_size > before:
                break
            await anyio.sleep(0.02)
        # A commit by itself would checkpoint only after 10,000 pages: these are far fewer.
        assert path.stat().st_size > before


def states(path):
    """Each run's state in the history file, by run ID."""
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT run_id, state FROM bulkretry_runs").fetchall())


@pytest.mark.anyio
async def test_claims_made_ahead_win_for_new_runs_and_others_are_claimed_by_the_rules(tmp_path):
    """A run never seen is claimed ahead; a known one as it leaves; an unused one is undone."""
    path = tmp_path / "history.sqlite3"
    async with serving(path) as ledger:
        assert await ledger.claim("known", None) is None
        ledger.record(
            Retriggered(run_id="known", new_run_id="known-2", etag=None, attempts=1, status=200)
        )
        for run_id in ("new", "known", "spare"):
            ledger.ahead(run_id, None)
        assert await ledger.claim("new", None) is None
        refusal = await ledger.claim("known", None)
        assert isinstance(refusal, Skipped) and refusal.reason == "already-retriggered"
        for run_id in ("spare", "new", "known"):  # only "spare" was claimed and not used
            ledger.unused(run_id)
        await ledger.flush()
    assert states(path) == {"known": "retriggered", "known-2": None, "new": "intent"}


@pytest.mark.anyio
async def test_a_run_that_must_wait_for_rate_gives_its_claim_made_ahead_back(tmp_path):
    """The look before a wait sees no intent of this job's own, and none is held meanwhile."""
    path = tmp_path / "history.sqlite3"
    async with serving(path) as ledger:
        ledger.ahead("slow", None)
        assert await ledger.peek("slow") is None
        await ledger.flush()
        assert states(path) == {}
        assert await ledger.claim("slow", None) is None  # as its request leaves
    assert states(path) == {"slow": "intent"}


@pytest.mark.anyio
async def test_a_claim_made_ahead_that_waited_too_long_is_made_anew(tmp_path, monkeypatch):
    """Its lease may have run out meanwhile: a claim made ahead is used only while fresh."""
    monkeypatch.setattr(history_ledger_module, "AHEAD_FRESH_S", 0.0)
    path = tmp_path / "history.sqlite3"
    async with serving(path) as ledger:
        for run_id in ("still-ours", "taken-over"):
            ledger.ahead(run_id, None)
        await ledger.flush()
        with sqlite3.connect(path) as db:  # as another job would, once the lease ran out
            db.execute(
                "UPDATE bulkretry_runs SET owner = 'elsewhere:1:x' WHERE run_id = 'taken-over'"
            )
        assert await ledger.claim("still-ours", None) is None
        taken = await ledger.claim("taken-over", None)
        assert isinstance(taken, Uncertain) and "elsewhere:1:x" in taken.error
    assert states(path) == {"still-ours": "intent", "taken-over": "intent"}
