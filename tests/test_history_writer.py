"""The history's writer process: commits off the job's interpreter, and how it ends."""

import os
import signal
import sqlite3

import anyio
import pytest

from bulkretry import Retriggered, Skipped
from bulkretry._errors import HistoryError
from bulkretry._history import History
from bulkretry._history_ledger import Committer
from bulkretry._history_location import HistoryLocation
from bulkretry._lineage import ClaimPolicy

pytestmark = pytest.mark.anyio

POLICY = ClaimPolicy()
ORG, SANDBOX = "ORG@AdobeOrg", "prod"


def done(run_id, new_run_id):
    return Retriggered(run_id=run_id, new_run_id=new_run_id, etag='"1"', attempts=1, status=200)


def rows(path):
    """Each run's (state, owner) in the history file, by run ID."""
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT run_id, state, parent_run_id FROM bulkretry_runs").fetchall()
    return {run_id: (state, parent) for run_id, state, parent in found}


def children(pid):
    """The process IDs whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                continue
    return found


async def started(history, tasks):
    """A committer whose writer process is up."""
    committer = Committer(history, POLICY, tasks, after=0)
    await committer.start()
    assert committer.ready
    return committer


async def test_commits_go_to_the_writer_process_with_the_same_answers(tmp_path):
    """Claims, refusals, outcomes and lineage come back and land as they do in the job."""
    path = tmp_path / "history.sqlite3"
    async with await History.open(HistoryLocation(path=path), org=ORG, sandbox=SANDBOX) as history:
        async with anyio.create_task_group() as tasks:
            committer = await started(history, tasks)
            assert await committer.commit([], [("a", "flow-1")], [("b", None)], []) == ([None], set())
            assert await committer.commit([done("a", "a-2")], [], [], []) == ([], set())
            answers, lost = await committer.commit([], [("a", None)], [("a-2", None)], [])
            await committer.aclose()
    [refusal] = answers
    assert isinstance(refusal, Skipped) and refusal.reason == "already-retriggered"
    assert lost == {"a-2"}  # not new: its own claim decides, right before its request
    assert rows(path) == {
        "a": ("retriggered", None),
        "a-2": (None, "a"),
        "b": ("intent", None),
    }


async def test_claims_made_ahead_and_given_back_leave_nothing(tmp_path):
    """A claim made ahead that no request used is undone: the next job may send the run."""
    path = tmp_path / "history.sqlite3"
    async with await History.open(HistoryLocation(path=path), org=ORG, sandbox=SANDBOX) as history:
        async with anyio.create_task_group() as tasks:
            committer = await started(history, tasks)
            await committer.commit([], [], [("spare", None), ("used", None)], [])
            await committer.commit([], [], [], ["spare"])
            await committer.aclose()
    assert rows(path) == {"used": ("intent", None)}


async def test_the_writer_ignores_signals_and_ends_when_the_job_closes_its_input(tmp_path):
    """Ctrl-C reaches the process group: the writer keeps committing until the job lets go."""
    path = tmp_path / "history.sqlite3"
    async with await History.open(HistoryLocation(path=path), org=ORG, sandbox=SANDBOX) as history:
        async with anyio.create_task_group() as tasks:
            committer = await started(history, tasks)
            [writer] = children(os.getpid())
            for signum in (signal.SIGINT, signal.SIGTERM):
                os.kill(writer, signum)
            await anyio.sleep(0.05)
            assert await committer.commit([], [], [("after-signals", None)], []) == ([], set())
            await committer.aclose()
    assert children(os.getpid()) == []
    assert rows(path) == {"after-signals": ("intent", None)}


async def test_a_writer_process_that_dies_fails_the_next_commit_in_one_line(tmp_path):
    """Killed mid-job: whether its last commit happened is unknown, so the job stops."""
    path = tmp_path / "history.sqlite3"
    async with await History.open(HistoryLocation(path=path), org=ORG, sandbox=SANDBOX) as history:
        async with anyio.create_task_group() as tasks:
            committer = await started(history, tasks)
            [writer] = children(os.getpid())
            os.kill(writer, signal.SIGKILL)
            with pytest.raises(HistoryError, match="writer process ended unexpectedly"):
                await committer.commit([], [("lost", None)], [], [])
            await committer.aclose()


async def test_a_writer_that_cannot_open_the_history_leaves_commits_with_the_job(tmp_path):
    """No process to hand over to: the job's own connection goes on committing."""
    path = tmp_path / "history.sqlite3"
    (tmp_path / "a-file").write_text("")
    async with await History.open(HistoryLocation(path=path), org=ORG, sandbox=SANDBOX) as opened:
        # The writer process is told a place where no history can be created.
        history = History(
            opened._db, HistoryLocation(path=tmp_path / "a-file" / "h.sqlite3"), ORG, SANDBOX
        )
        async with anyio.create_task_group() as tasks:
            committer = Committer(history, POLICY, tasks, after=0)
            await committer.start()
            assert not committer.ready
            assert await committer.commit([], [("here", None)], [], []) == ([None], set())
            await committer.aclose()
    assert rows(path) == {"here": ("intent", None)}
