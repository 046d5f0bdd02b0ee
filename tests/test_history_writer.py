"""The history's writer process: commits off the job's interpreter, and how it ends."""

import os
import pickle
import signal
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from bulkretry import Failed, Retriggered, Skipped, Uncertain
from bulkretry._errors import HistoryError
from bulkretry._history import History
from bulkretry._history_commits import Committer
from bulkretry._history_location import HistoryLocation
from bulkretry._history_writer import HEADER, _unpack, pack
from bulkretry._lineage import ClaimPolicy, Lineage
from bulkretry._text import Secret

pytestmark = pytest.mark.anyio

POLICY = ClaimPolicy()
ORG, SANDBOX = "ORG@AdobeOrg", "prod"


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    """A fresh history of each kind."""
    if request.param == "sqlite":
        return HistoryLocation(path=tmp_path / "history.sqlite3")
    return HistoryLocation(url=Secret(request.getfixturevalue("pg_url")))


@asynccontextmanager
async def committing(location, *, ready=True):
    """The job's history and a committer; its writer process started (and up, if ``ready``)."""
    async with (
        await History.open(location, org=ORG, sandbox=SANDBOX) as history,
        anyio.create_task_group() as tasks,
    ):
        committer = Committer(history, POLICY, tasks, after=0)
        await committer.start()
        assert committer.ready is ready
        try:
            yield history, committer
        finally:
            await committer.aclose()


def done(run_id, new_run_id):
    """A re-trigger's outcome."""
    return Retriggered(run_id=run_id, new_run_id=new_run_id, etag='"1"', attempts=1, status=200)


def environment_of(pid):
    """A process's environment, as the kernel shows it."""
    return Path(f"/proc/{pid}/environ").read_bytes()


def writers(parent=None):
    """The process IDs of the history writers started by ``parent`` (default: this process)."""
    parent = parent or os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if ppid == parent and b"bulkretry._history_writer" in command:
                found.append(int(entry.name))
    return found


async def test_commits_go_to_the_writer_process_with_the_same_answers(location):
    """Claims, refusals, outcomes and lineage come back and land as they do in the job."""
    async with committing(location) as (history, committer):
        assert await committer.commit([], [("a", "f")], [("b", None)], []) == ([None], set())
        assert await committer.commit([done("a", "a-2")], [], [], []) == ([], set())
        [refusal], lost = await committer.commit([], [("a", None)], [("a-2", None)], [])
        known = await history.lineage(["a", "a-2", "b"])
    assert isinstance(refusal, Skipped) and refusal.reason == "already-retriggered"
    assert lost == {"a-2"}  # not new: its own claim decides, right before its request
    assert known == {
        "a": Lineage(generation=0, original_run_id=None, retriggered=True),
        "a-2": Lineage(generation=1, original_run_id="a", retriggered=False),
        "b": Lineage(generation=0, original_run_id=None, retriggered=False),
    }


async def test_claims_made_ahead_and_given_back_leave_nothing(location):
    """A claim made ahead that no request used is undone: the next job may send the run."""
    async with committing(location) as (history, committer):
        await committer.commit([], [], [("spare", None), ("used", None)], [])
        await committer.commit([], [], [], ["spare"])
        assert set(await history.lineage(["spare", "used"])) == {"used"}


async def test_the_writer_ignores_signals_and_ends_when_the_job_closes_its_input(tmp_path):
    """Ctrl-C reaches the process group: the writer keeps committing until the job lets go."""
    async with committing(HistoryLocation(path=tmp_path / "h.sqlite3")) as (history, committer):
        [writer] = writers()
        for signum in (signal.SIGINT, signal.SIGTERM):
            os.kill(writer, signum)
        await anyio.sleep(0.05)
        assert await committer.commit([], [], [("after-signals", None)], []) == ([], set())
        await committer.aclose()
        assert writers() == []
        assert set(await history.lineage(["after-signals"])) == {"after-signals"}


async def test_a_writer_process_that_dies_fails_the_next_commit_in_one_line(tmp_path):
    """Killed mid-job: whether its last commit happened is unknown, so the job stops."""
    async with committing(HistoryLocation(path=tmp_path / "h.sqlite3")) as (_, committer):
        [writer] = writers()
        os.kill(writer, signal.SIGKILL)
        with pytest.raises(HistoryError, match="writer process ended unexpectedly"):
            await committer.commit([], [("lost", None)], [], [])


async def test_no_writer_process_leaves_the_commits_with_the_job(tmp_path, monkeypatch):
    """A writer process that cannot start changes nothing: the job's connection commits."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    location = HistoryLocation(path=tmp_path / "h.sqlite3")
    async with committing(location, ready=False) as (history, committer):
        assert await committer.commit([], [("here", None)], [], []) == ([None], set())
        assert set(await history.lineage(["here"])) == {"here"}


def test_a_commit_travels_whole_whatever_its_run_ids_say():
    """A new run ID that reads "failed" stays a re-trigger's new run ID on the way."""
    outcomes = [
        done("a", "failed"),
        done("b", "uncertain"),
        Failed(run_id="c", status=500, error="retriggered", attempts=2),
        Uncertain(run_id="d", status=None, error="timed out", attempts=1),
    ]
    message = pack(outcomes, [("e", "flow")], [("f", None)], ["g"])
    (size,) = HEADER.unpack(message[: HEADER.size])
    assert size == len(message) - HEADER.size
    back = _unpack(pickle.loads(message[HEADER.size :]))
    assert back.outcomes == outcomes
    claimed = [*back.claims, *back.ahead]
    assert [(c.run_id, c.flow_id) for c in claimed] == [("e", "flow"), ("f", None)]
    assert back.unused == ["g"]


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_writer_never_takes_a_history_file_other_than_the_jobs(tmp_path, how):
    """Removed or replaced before the writer opened it: no new file, and the job stops."""
    path = tmp_path / "h.sqlite3"
    async with (
        await History.open(HistoryLocation(path=path), org=ORG, sandbox=SANDBOX) as history,
        anyio.create_task_group() as tasks,
    ):
        copy = tmp_path / "copy.sqlite3"
        copy.write_bytes(path.read_bytes())
        path.unlink()
        if how == "replaced":
            copy.rename(path)
        committer = Committer(history, POLICY, tasks, after=0)
        await committer.start()
        assert not committer.ready
        assert path.exists() is (how == "replaced")  # the writer created nothing
        with pytest.raises(HistoryError, match="removed or replaced while this job ran"):
            await committer.commit([], [("after", None)], [], [])
        await committer.aclose()


async def test_the_writer_imports_nothing_from_the_jobs_directory_nor_sees_its_secrets(
    tmp_path, monkeypatch
):
    """Run from a directory with a ``bulkretry`` of its own, and with a token set."""
    shadow = tmp_path / "cwd" / "bulkretry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise SystemExit('the wrong bulkretry')\n")
    monkeypatch.chdir(shadow.parent)
    monkeypatch.setenv("AEP_ACCESS_TOKEN", "a-token-the-writer-never-needs")
    location = HistoryLocation(path=tmp_path / "h.sqlite3")
    async with committing(location) as (_, committer):
        [writer] = writers()
        assert b"a-token-the-writer-never-needs" not in environment_of(writer)
        assert await committer.commit([], [("fine", None)], [], []) == ([None], set())
