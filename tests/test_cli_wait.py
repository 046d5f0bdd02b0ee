"""`bulkretry retry --wait` from the command line: lines, counts, exit status, signals."""

import signal
import time

import pytest

from bulkretry.emulator import Faults, Lifecycle, Run

from .conftest import cli_env, parse_lines, run_cli, spawn_cli

TRANSIENT = (("CONNECTOR-1001-500", "The connection to the source failed: read timed out."),)
# One hundredth of the real cadence: first look after 0.05 s instead of 5 s.
WAIT = ["--wait", "--poll-interval", "0.05", "--rate", "0"]


def seed(emulator, recovering, poison=()):
    """Failed runs that recover when re-triggered, and poison runs that fail every time."""
    for run_id in recovering:
        emulator.add_run(Run(id=run_id, flow_id="flow", input_records=12, errors=TRANSIENT))
    for run_id in poison:
        emulator.add_run(Run(id=run_id, flow_id="flow", errors=TRANSIENT, poison=True))


def test_wait_reports_recovered_and_failed_again_and_exits_1(emulator, thread_server):
    """Each retriggered line gets a finished line, the summary counts them, a poison run: exit 1."""
    emulator.lifecycle = Lifecycle(seconds=0.1)
    seed(emulator, recovering=["ok-1", "ok-2", "ok-3"], poison=["bad-1"])
    result = run_cli(
        ["retry", *WAIT], env=cli_env(thread_server), stdin=b"ok-1\nok-2\nbad-1\nok-3\n"
    )
    assert result.code == 1, result.stderr
    finished = {line["run_id"]: line for line in result.events("finished")}
    new_runs = {line["run_id"]: line["new_run_id"] for line in result.events("retriggered")}
    assert set(finished) == set(new_runs) == {"ok-1", "ok-2", "ok-3", "bad-1"}
    for run_id, line in finished.items():
        assert line["new_run_id"] == new_runs[run_id]
        assert set(line) == {
            "event",
            "timestamp",
            "level",
            "run_id",
            "new_run_id",
            "status",
            "records",
            "error",
            "duration_s",
        }
    assert (finished["ok-2"]["status"], finished["ok-2"]["records"]) == ("success", 12)
    assert finished["ok-2"]["error"] is None and finished["ok-2"]["level"] == "info"
    bad = finished["bad-1"]
    assert (bad["status"], bad["level"]) == ("failed", "error")
    assert bad["error"].startswith("CONNECTOR-1001-500: ")
    summary = result.summary
    assert (summary["total"], summary["retriggered"]) == (4, 4)
    assert (summary["recovered"], summary["failed_again"], summary["unfinished"]) == (3, 1, 0)
    assert "3 recovered, 1 failed again, 0 unfinished" in result.stderr


def test_wait_exits_0_when_every_run_recovers(emulator, thread_server):
    """All new runs ending success is exit 0; without --wait the summary has no follow counts."""
    emulator.lifecycle = Lifecycle(seconds=0.05)
    seed(emulator, recovering=["ok-1", "ok-2"])
    env = cli_env(thread_server)
    result = run_cli(["retry", *WAIT], env=env, stdin=b"ok-1\nok-2\n")
    assert result.code == 0, result.stderr
    assert [line["status"] for line in result.events("finished")] == ["success", "success"]
    plain = run_cli(["retry", "--rate", "0"], env=env, stdin=b"ok-1\n")
    assert plain.code == 0 and not plain.events("finished")
    assert "recovered" not in plain.summary


def test_wait_timeout_gives_timed_out_lines_and_exit_1(emulator, thread_server):
    """Runs still going when --wait-timeout passes are timed-out, counted unfinished, exit 1."""
    emulator.lifecycle = Lifecycle(seconds=None)
    seed(emulator, recovering=["slow-1", "slow-2"])
    result = run_cli(
        ["retry", *WAIT, "--wait-timeout", "0.3"],
        env=cli_env(thread_server),
        stdin=b"slow-1\nslow-2\n",
    )
    assert result.code == 1, result.stderr
    lines = result.events("finished")
    assert [(line["status"], line["level"]) for line in lines] == [("timed-out", "warning")] * 2
    assert all(0.3 <= line["duration_s"] < 2 for line in lines)
    assert result.summary["unfinished"] == 2


def test_polls_refused_for_the_caller_give_each_run_a_timed_out_line(emulator, thread_server):
    """Polls refused (401) three in a row: each run one timed-out line saying why, exit 1."""
    emulator.lifecycle = Lifecycle(seconds=None)
    emulator.faults = Faults(get_script=["unauthorized"] * 3)
    seed(emulator, recovering=["r-1", "r-2"])
    started = time.monotonic()
    result = run_cli(
        ["retry", *WAIT, "--wait-timeout", "30"],
        env=cli_env(thread_server),
        stdin=b"r-1\nr-2\n",
    )
    assert result.code == 1, result.stderr
    assert time.monotonic() - started < 15  # not the 30 s --wait-timeout
    lines = result.events("finished")
    assert sorted(line["run_id"] for line in lines) == ["r-1", "r-2"]
    for line in lines:
        assert (line["status"], line["level"]) == ("timed-out", "warning")
        assert line["error"].startswith("polls refused 3 times in a row (401013: ")
    summary = result.summary
    assert (summary["recovered"], summary["failed_again"], summary["unfinished"]) == (0, 0, 2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_waiting_stops_polling_and_exits_130(emulator, thread_server, signum):
    """A signal while waiting: no finished line for pending runs, all unfinished, exit 130."""
    emulator.lifecycle = Lifecycle(seconds=None)
    seed(emulator, recovering=["w-1", "w-2", "w-3"])
    proc = spawn_cli(["retry", *WAIT], env=cli_env(thread_server))
    proc.stdin.write(b"w-1\nw-2\nw-3\n")
    proc.stdin.close()
    deadline = time.monotonic() + 20
    while (
        len({r.run_id for r in emulator.stats.requests if r.method == "GET"}) < 3
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 130, proc.stderr.read()  # a few lines: no pipe fills up
    lines = parse_lines(proc.stdout.read())
    assert [line["event"] for line in lines] == ["retriggered"] * 3 + ["summary"]
    assert (lines[-1]["retriggered"], lines[-1]["unfinished"]) == (3, 3)
    polls = sum(1 for r in emulator.stats.requests if r.method == "GET")
    time.sleep(0.2)  # four first looks' worth: nothing more is asked
    assert sum(1 for r in emulator.stats.requests if r.method == "GET") == polls


def test_wait_flags_refuse_nonsense(thread_server):
    """A zero --wait-timeout or --poll-interval is a usage error, exit 2, nothing sent."""
    env = cli_env(thread_server)
    for flag in ("--wait-timeout", "--poll-interval"):
        result = run_cli(["retry", "--wait", flag, "0"], env=env, stdin=b"x-1\n")
        assert result.code == 2 and flag in result.stderr


def test_demo_shows_the_follow_through_in_seconds(demo_run):
    """`bulkretry demo` follows its new runs: 9 of 10 recovered, one poison run failed again."""
    result, seconds = demo_run
    assert result.code == 0, result.stderr
    assert seconds < 10
    finished = result.events("finished")
    assert len(finished) == len(result.events("retriggered")) == 10
    assert sorted(line["status"] for line in finished) == ["failed"] + ["success"] * 9
    (again,) = [line for line in finished if line["status"] == "failed"]
    assert again["error"].startswith("CONNECTOR-1001-500: ")
    assert (result.summary["recovered"], result.summary["failed_again"]) == (9, 1)
    assert "9 of 10 recovered, 1 failed again with CONNECTOR-1001-500" in result.stderr
