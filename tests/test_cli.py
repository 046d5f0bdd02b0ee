"""The installed command, run through its entry point as users and schedulers run it."""

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import bulkretry
from bulkretry.emulator import Faults, Run

from .conftest import API_KEY, CLIENT_SECRET, cli_env, parse_lines, run_cli, spawn_cli
from .forked import run_forked

COMMON = {"event", "timestamp", "level"}


def test_version_and_help():
    """--version prints the package version; --help shows real examples."""
    result = run_cli(["--version"], env=cli_env())
    assert result.code == 0 and bulkretry.__version__ in result.stdout.decode()
    help_text = run_cli(["retry", "--help"], env=cli_env()).stdout.decode()
    assert "bulkretry failed --flow-id" in help_text and "--journal" in help_text


def test_the_console_script_pip_installs_runs_a_job(emulator, thread_server):
    """The `bulkretry` script itself (a fresh interpreter, not a fork) runs a job end to end."""
    script = Path(sys.executable).with_name("bulkretry")
    if not script.exists():
        pytest.skip("bulkretry is not installed beside this Python (pip install -e .)")
    done = subprocess.run(
        [str(script), "retry", "--rate", "0"],
        input=b"script-1\n",
        capture_output=True,
        env=cli_env(thread_server),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    retriggered, summary = parse_lines(done.stdout)
    assert (retriggered["event"], retriggered["run_id"]) == ("retriggered", "script-1")
    assert summary["event"] == "summary" and summary["retriggered"] == 1
    assert emulator.stats.retriggers == {"script-1": 1}


def test_stdin_job_exits_0_with_one_line_per_id_and_a_summary(emulator, thread_server):
    """IDs piped on stdin are re-triggered; each gets one line with the contract's fields."""
    result = run_cli(
        ["retry", "--rate", "0"], env=cli_env(thread_server), stdin=b"a-1\na-2\n\n# c\na-3\n"
    )
    assert result.code == 0, result.stderr
    lines = result.events("retriggered")
    assert {line["run_id"] for line in lines} == {"a-1", "a-2", "a-3"}
    for line in lines:
        assert set(line) == COMMON | {"run_id", "new_run_id", "etag", "attempts", "status"}
        assert line["timestamp"].endswith("Z") and line["level"] == "info"
    assert result.summary == result.summary | {
        "total": 3,
        "retriggered": 3,
        "failed": 0,
        "uncertain": 0,
        "skipped": 0,
        "planned": 0,
    }
    assert emulator.stats.retriggers == {"a-1": 1, "a-2": 1, "a-3": 1}


def test_files_and_dash_mix_files_with_stdin(thread_server, tmp_path):
    """Named files and '-' are read in order; a JSON line from 'bulkretry failed' pipes in."""
    path = tmp_path / "ids.txt"
    path.write_text('f-1\n{"run_id": "f-2", "flow_id": "x", "status": "failed"}\n')
    result = run_cli(
        ["retry", str(path), "-", "--rate", "0"], env=cli_env(thread_server), stdin=b"s-1\n"
    )
    assert result.code == 0, result.stderr
    assert [line["run_id"] for line in result.lines[:-1]] == ["f-1", "f-2", "s-1"] or {
        line["run_id"] for line in result.lines[:-1]
    } == {"f-1", "f-2", "s-1"}


def test_exit_1_when_anything_failed_or_was_invalid(emulator, thread_server):
    """An invalid line, a duplicate and a refused run: exit 1, and the counts add up."""
    emulator.auto_create = False
    result = run_cli(
        ["retry"], env=cli_env(thread_server), stdin=b"bad id!\nunknown-1\nunknown-1\n"
    )
    assert result.code == 1
    assert result.events("skipped")[0] | {"reason": "invalid"} == result.events("skipped")[0]
    assert {line["reason"] for line in result.events("skipped")} == {"invalid", "duplicate"}
    [failed] = result.events("failed")
    assert set(failed) == COMMON | {"run_id", "status", "error", "attempts"}
    assert failed["status"] == 404
    summary = result.summary
    assert summary["total"] == 3 == len(result.lines) - 1
    assert summary["total"] == sum(
        summary[k] for k in ("retriggered", "failed", "uncertain", "skipped", "planned")
    )


def test_only_duplicates_still_exit_0(thread_server):
    """Duplicates alone do not make a job unsuccessful."""
    result = run_cli(["retry", "--rate", "0"], env=cli_env(thread_server), stdin=b"d-1\nd-1\n")
    assert result.code == 0


@pytest.mark.parametrize(
    ("args", "env_change", "message"),
    [
        (["retry"], {"AEP_ORG_ID": ""}, "AEP_ORG_ID"),
        (["retry"], {"AEP_ACCESS_TOKEN": ""}, "credentials"),
        (["retry", "--base-url", "http://platform.adobe.io/x"], {}, "loopback"),
        (["retry", "--rate", "fast"], {}, "--rate"),
        (["retry", "--concurrency", "0"], {}, "--concurrency"),
        (["retry", "/nonexistent/ids.txt"], {}, "/nonexistent/ids.txt"),
    ],
)
def test_usage_errors_exit_2_before_any_request(emulator, thread_server, args, env_change, message):
    """Bad configuration or an unreadable file: exit 2, one clear line, nothing sent."""
    env = cli_env(thread_server) | env_change
    result = run_cli(args, env=env, stdin=b"x-1\n")
    assert result.code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == b""
    assert emulator.stats.requests == []


def test_dry_run_plans_without_credentials(emulator, thread_server):
    """--dry-run needs no credentials, sends nothing and plans every valid new ID."""
    env = cli_env(thread_server) | {"AEP_ACCESS_TOKEN": "", "AEP_ORG_ID": ""}
    result = run_cli(["retry", "--dry-run"], env=env, stdin=b"p-1\np-2\np-1\n")
    assert result.code == 0
    assert [line["run_id"] for line in result.events("planned")] == ["p-1", "p-2"]
    assert result.summary["planned"] == 2
    assert emulator.stats.requests == []


def test_output_file_is_truncated_and_gets_the_lines(thread_server, tmp_path):
    """--output writes the JSON lines to a file (truncated first); stdout stays empty."""
    out = tmp_path / "results.jsonl"
    out.write_text("stale\n" * 100)
    result = run_cli(["retry", "--output", str(out)], env=cli_env(thread_server), stdin=b"o-1\n")
    assert result.code == 0 and result.stdout == b""
    lines = parse_lines(out.read_bytes())
    assert [line["event"] for line in lines] == ["retriggered", "summary"]


def test_streaming_a_request_completes_while_stdin_is_still_open(emulator, thread_server):
    """The first re-trigger is sent and reported before the input has ended."""
    proc = spawn_cli(["retry", "--rate", "0"], env=cli_env(thread_server))
    proc.stdin.write(b"stream-1\n")
    proc.stdin.flush()
    first = orjson.loads(proc.stdout.readline())  # arrives while stdin stays open
    assert first["event"] == "retriggered" and first["run_id"] == "stream-1"
    assert emulator.stats.retriggers == {"stream-1": 1}
    proc.stdin.write(b"stream-2\n")
    proc.stdin.close()
    rest = parse_lines(proc.stdout.read())
    assert proc.wait(timeout=30) == 0
    assert [line["event"] for line in rest] == ["retriggered", "summary"]


def test_sigterm_finishes_in_flight_reports_and_exits_130(emulator, thread_server):
    """SIGTERM mid-job: exit 130, a summary, every read ID accounted, every applied one reported."""
    emulator.faults = Faults(latency=0.3)
    proc = spawn_cli(["retry", "--rate", "0", "--concurrency", "4"], env=cli_env(thread_server))
    proc.stdin.write(b"".join(b"term-%d\n" % n for n in range(100)))
    proc.stdin.flush()  # stdin stays open: the job is waiting for more input
    deadline = time.monotonic() + 20
    while len(emulator.stats.requests) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    lines = parse_lines(stdout)
    summary = lines[-1]
    assert summary["event"] == "summary"
    assert summary["total"] == len(lines) - 1
    reported = {line["run_id"]: line["event"] for line in lines[:-1]}
    assert len(reported) == len(lines) - 1
    for run_id in emulator.stats.retriggers:
        assert reported[run_id] in {"retriggered", "uncertain"}
    assert "interrupted" in {line.get("reason") for line in lines}
    assert b"SIGTERM" in stderr


def test_a_closed_output_pipe_ends_the_job_with_one_line(thread_server):
    """`bulkretry retry ... | head -1`: exit 1 and a clear line, never a traceback."""
    proc = spawn_cli(["retry", "--rate", "0"], env=cli_env(thread_server))
    proc.stdin.write(b"".join(b"pipe-%d\n" % n for n in range(3000)))
    proc.stdin.close()
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "output was closed" in stderr
    assert "Traceback" not in stderr


def test_a_signal_during_start_up_exits_130_with_a_summary_and_sends_nothing(
    emulator, thread_server
):
    """SIGTERM while the token is still being fetched: exit 130, an empty summary, no request."""
    emulator.faults = Faults(ims_script=["unavailable"] * 10)
    env = cli_env(thread_server, AEP_CLIENT_ID=API_KEY, AEP_CLIENT_SECRET=CLIENT_SECRET)
    proc = spawn_cli(["retry", "--max-attempts", "6"], env=env)
    proc.stdin.write(b"early-1\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    while emulator.stats.token_requests < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    [summary] = parse_lines(stdout)
    assert summary["event"] == "summary" and summary["total"] == 0
    assert emulator.stats.requests == []


def test_dry_run_still_refuses_a_bad_url_flag():
    """--dry-run needs no credentials, but `--base-url http://public.host` is still exit 2."""
    result = run_cli(
        ["retry", "--dry-run", "--base-url", "http://platform.adobe.io/x"],
        env=cli_env(),
        stdin=b"d-1\n",
    )
    assert result.code == 2 and "loopback" in result.stderr


def test_a_full_output_disk_is_one_line_and_exit_1(thread_server):
    """Writing the JSON lines to a full disk (/dev/full): exit 1 and a clear line, no traceback."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    result = run_cli(
        ["retry", "--rate", "0", "--output", "/dev/full"],
        env=cli_env(thread_server),
        stdin=b"x-1\n",
    )
    assert result.code == 1
    assert "cannot write the JSON lines" in result.stderr
    assert "rerun the same command to resume" in result.stderr  # a retry job resumes
    assert "Traceback" not in result.stderr


def test_a_listing_that_cannot_write_its_lines_offers_no_resume(emulator, thread_server):
    """`failed` into a full disk: exit 1 and one line that does not promise a resume."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    emulator.add_run(Run(id="full-1", flow_id="flow-full"))
    with Path("/dev/full").open("wb") as full:
        done = run_forked(
            ["failed", "--flow-id", "flow-full"], env=cli_env(thread_server), stdout=full
        )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "cannot write" in stderr
    assert "resume" not in stderr
    assert "Traceback" not in stderr


def test_unrelated_aep_variables_are_left_alone(thread_server):
    """A multi-line AEP_* variable bulkretry does not read (an old PEM key) is no error."""
    env = cli_env(thread_server, AEP_PRIVATE_KEY="-----BEGIN-----\nabc\n-----END-----")
    assert run_cli(["retry", "--rate", "0"], env=env, stdin=b"pem-1\n").code == 0


def test_sigterm_stops_a_listing_with_130_and_keeps_its_lines(emulator, thread_server):
    """`bulkretry failed` on SIGTERM: exit 130, every line already written is whole JSON."""
    for n in range(500):
        emulator.add_run(Run(id=f"lf-{n}", flow_id="flow-t"))
    emulator.faults = Faults(latency=0.5)  # five pages: 2.5 s of listing to interrupt
    proc = spawn_cli(["failed", "--flow-id", "flow-t", "--rate", "0"], env=cli_env(thread_server))
    deadline = time.monotonic() + 20
    while not emulator.stats.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.terminate()
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert all(line["flow_id"] == "flow-t" for line in parse_lines(stdout))
