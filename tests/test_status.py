"""`bulkretry status`: the morning check, read from a real SQLite history."""

import time

import anyio
import pytest

from bulkretry import Retriggered
from bulkretry._history import GroupCommit, History
from bulkretry._history_location import HistoryLocation
from bulkretry._lineage import Claim, ClaimPolicy
from bulkretry.emulator import Lifecycle, Run

from .conftest import ORG, cli_env, run_cli

TRANSIENT = (("CONNECTOR-1001-500", "The connection to the source failed: read timed out."),)
CHAIN_KEYS = {
    "run_id",
    "flow_id",
    "generation",
    "latest_run_id",
    "latest_status",
    "retriggered_at",
    "error",
}


def seed(path, *, finished=True):
    """Four originals: recovered, failed again, still pending, and one at the generation limit."""

    async def main():
        policy = ClaimPolicy()
        location = HistoryLocation(path=path)
        async with await History.open(location, org=ORG, sandbox="prod") as history:

            async def retrigger(run_id, new_run_id, flow_id=None):
                claim = Claim(run_id=run_id, flow_id=flow_id)
                await history.commit(GroupCommit(claims=[claim]), policy)
                done = Retriggered(
                    run_id=run_id, new_run_id=new_run_id, etag=None, attempts=1, status=200
                )
                await history.commit(GroupCommit(outcomes=[done]), policy)

            await retrigger("ok", "ok-2", "flow-a")
            await retrigger("bad", "bad-2", "flow-a")
            await retrigger("wait", "wait-2", "flow-b")
            await retrigger("worn", "worn-1", "flow-b")
            await retrigger("worn-1", "worn-2")
            await retrigger("worn-2", "worn-3")
            if finished:
                error = "CONNECTOR-1001-500: The connection to the source failed."
                await history.record_finished("ok-2", status="success", records=40)
                await history.record_finished("bad-2", status="failed", error=error)
                await history.record_finished("worn-3", status="failed", error=error)

    anyio.run(main)


def env(tmp_path, server=None):
    """The CLI's environment with a history file of the test's own."""
    return cli_env(server, BULKRETRY_HISTORY=str(tmp_path / "history.sqlite3"))


def test_status_lists_one_line_per_original_run(tmp_path):
    """Each original run gets one JSON line with the latest run of its chain and its fate."""
    seed(tmp_path / "history.sqlite3")
    result = run_cli(["status"], env=env(tmp_path))
    assert result.code == 0, result.stderr
    lines = {line["run_id"]: line for line in result.lines}
    assert set(lines) == {"ok", "bad", "wait", "worn"}
    assert all(set(line) == CHAIN_KEYS for line in lines.values())
    assert (lines["ok"]["latest_run_id"], lines["ok"]["latest_status"]) == ("ok-2", "success")
    assert lines["bad"]["error"].startswith("CONNECTOR-1001-500")
    assert (lines["wait"]["latest_status"], lines["wait"]["generation"]) == ("pending", 1)
    assert (lines["worn"]["generation"], lines["worn"]["latest_run_id"]) == (3, "worn-3")
    assert lines["ok"]["retriggered_at"].endswith("Z")


def test_status_summary_counts_per_flow_and_error_code(tmp_path):
    """--summary: retriggered, recovered, failed_again, pending, exhausted per flow and code."""
    seed(tmp_path / "history.sqlite3")
    result = run_cli(["status", "--summary"], env=env(tmp_path))
    assert result.code == 0, result.stderr
    counts = {(line["flow_id"], line["error_code"]): line for line in result.lines}
    numbers = ("retriggered", "recovered", "failed_again", "pending", "exhausted")
    assert {key: tuple(line[n] for n in numbers) for key, line in counts.items()} == {
        ("flow-a", None): (1, 1, 0, 0, 0),
        ("flow-a", "CONNECTOR-1001-500"): (1, 0, 1, 0, 0),
        ("flow-b", None): (1, 0, 0, 1, 0),
        ("flow-b", "CONNECTOR-1001-500"): (1, 0, 0, 0, 1),
    }


def test_status_filters_and_table(tmp_path):
    """--flow-id and --since narrow the lines; --format table is for a person."""
    seed(tmp_path / "history.sqlite3")
    flow_b = run_cli(["status", "--flow-id", "flow-b"], env=env(tmp_path))
    assert {line["run_id"] for line in flow_b.lines} == {"wait", "worn"}
    recent = run_cli(["status", "--since", "1h"], env=env(tmp_path))
    assert len(recent.lines) == 4
    future = run_cli(["status", "--since", "2999-01-01T00:00:00Z"], env=env(tmp_path))
    assert (future.code, future.stdout) == (0, b"")
    table = run_cli(["status", "--summary", "--format", "table"], env=env(tmp_path))
    head, *rows = table.stdout.decode().splitlines()
    assert head.split() == [
        "flow_id",
        "error_code",
        *["retriggered", "recovered", "failed_again", "pending", "exhausted"],
    ]
    assert len(rows) == 4


def test_status_reads_without_writing_and_needs_an_org(tmp_path):
    """Reading a history that does not exist shows nothing and creates nothing; no org is exit 2."""
    result = run_cli(["status"], env=env(tmp_path))
    assert (result.code, result.stdout) == (0, b"")
    assert not (tmp_path / "history.sqlite3").exists()
    no_org = {k: v for k, v in env(tmp_path).items() if k != "AEP_ORG_ID"}
    refused = run_cli(["status"], env=no_org)
    assert refused.code == 2 and "AEP_ORG_ID" in refused.stderr
    off = run_cli(["status", "--history", "off"], env=env(tmp_path))
    assert off.code == 2 and "off" in off.stderr


@pytest.mark.parametrize("answer", ["items", "run"])
def test_refresh_asks_about_pending_runs_only_and_records_their_end(
    answer, tmp_path, emulator, thread_server
):
    """--refresh polls each pending new run once, and the history keeps what it learns.

    Whether ``GET /runs/{id}`` answers ``{"items": [run]}`` or the run itself.
    """
    emulator.run_answer = answer
    seed(tmp_path / "history.sqlite3", finished=False)
    emulator.add_run(Run(id="ok-2", flow_id="flow-a", status="success", output_records=40))
    emulator.add_run(Run(id="bad-2", flow_id="flow-a", errors=TRANSIENT))
    emulator.add_run(Run(id="wait-2", flow_id="flow-b", status="inProgress"))
    emulator.add_run(Run(id="worn-3", flow_id="flow-b", errors=TRANSIENT))
    emulator.auto_create = False
    result = run_cli(["status", "--refresh", "--rate", "0"], env=env(tmp_path, thread_server))
    assert result.code == 0, result.stderr
    assert "3 runs found ended" in result.stderr
    polled = sorted(r.run_id for r in emulator.stats.requests)
    assert polled == ["bad-2", "ok-2", "wait-2", "worn-3"]  # pending ones, once each
    lines = {line["run_id"]: line for line in result.lines}
    assert lines["ok"]["latest_status"] == "success"
    assert lines["bad"]["latest_status"] == "failed"
    assert lines["bad"]["error"].startswith("CONNECTOR-1001-500: ")
    assert lines["wait"]["latest_status"] == "pending"
    again = run_cli(["status", "--refresh", "--rate", "0"], env=env(tmp_path, thread_server))
    assert "0 runs found ended" in again.stderr
    assert sorted(r.run_id for r in emulator.stats.requests) == [*polled[:3], "wait-2", polled[3]]


def test_the_nightly_wait_is_what_status_reads_the_next_morning(tmp_path, emulator, thread_server):
    """`retry --wait` records each new run's end; `status --summary` counts the same next day."""
    emulator.lifecycle = Lifecycle(seconds=0.05)
    for run_id in ("n-1", "n-2", "n-3"):
        emulator.add_run(Run(id=run_id, flow_id="flow-n", errors=TRANSIENT))
    emulator.add_run(Run(id="n-bad", flow_id="flow-n", errors=TRANSIENT, poison=True))
    night = run_cli(
        ["retry", "--wait", "--poll-interval", "0.05", "--rate", "0"],
        env=env(tmp_path, thread_server),
        stdin=b"n-1\nn-2\nn-3\nn-bad\n",
    )
    assert night.code == 1, night.stderr
    assert (night.summary["recovered"], night.summary["failed_again"]) == (3, 1)
    morning = run_cli(["status", "--summary"], env=env(tmp_path))
    counts = {line["error_code"]: line for line in morning.lines}
    assert set(counts) == {None, "CONNECTOR-1001-500"}
    assert (counts[None]["retriggered"], counts[None]["recovered"]) == (3, 3)
    assert counts["CONNECTOR-1001-500"]["failed_again"] == 1
    assert sum(line["pending"] for line in morning.lines) == 0


def test_runs_that_timed_out_while_waiting_are_picked_up_by_refresh(
    tmp_path, emulator, thread_server
):
    """A timed-out run stays pending in the history; `status --refresh` later records its end."""
    emulator.lifecycle = Lifecycle(seconds=0.5)
    emulator.add_run(Run(id="late", flow_id="flow-l", errors=TRANSIENT))
    night = run_cli(
        ["retry", "--wait", "--wait-timeout", "0.1", "--poll-interval", "0.05", "--rate", "0"],
        env=env(tmp_path, thread_server),
        stdin=b"late\n",
    )
    assert [line["status"] for line in night.events("finished")] == ["timed-out"]
    (before,) = run_cli(["status"], env=env(tmp_path)).lines
    assert before["latest_status"] == "pending"
    time.sleep(0.5)  # the emulated run ends meanwhile
    (after,) = run_cli(["status", "--refresh"], env=env(tmp_path, thread_server)).lines
    assert (after["latest_status"], after["latest_run_id"]) == ("success", before["latest_run_id"])


def test_refresh_refused_for_the_caller_is_one_line(tmp_path, thread_server):
    """--refresh with credentials the API refuses: one clear line, exit 2, history unchanged."""
    seed(tmp_path / "history.sqlite3", finished=False)
    wrong = env(tmp_path, thread_server) | {"AEP_API_KEY": "not-the-key"}
    result = run_cli(["status", "--refresh", "--rate", "0"], env=wrong)
    assert result.code == 2
    assert result.stderr.count("403003") == 1 and "Traceback" not in result.stderr
    (line,) = [
        line for line in run_cli(["status"], env=env(tmp_path)).lines if line["run_id"] == "ok"
    ]
    assert line["latest_status"] == "pending"
