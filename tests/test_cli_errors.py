"""One clear line, never a traceback: absurd values, wild dates, signals, a closed stderr."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bulkretry._backoff import Backoff
from bulkretry.emulator import Faults, Run

from .conftest import cli_env, parse_lines, run_cli, spawn_cli
from .forked import run_forked


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--concurrency", "100000", "1 to 1000"),
        ("--concurrency", "0", "1 to 1000"),
        ("--rate", "1e300", "0 (no limit) or 0.01 to 10000"),
        ("--rate", "nan", "0 (no limit) or 0.01 to 10000"),
        ("--max-attempts", "1100", "1 to 100"),
        ("--timeout", "1e300", "0.001 to 3600"),
    ],
)
def test_absurd_values_are_usage_errors_naming_the_range(flag, value, allowed):
    """--concurrency 100000, --rate 1e300 and such: exit 2 naming the range, no traceback."""
    result = run_cli(["retry", "--dry-run", flag, value], env=cli_env(), stdin=b"a-1\n")
    assert result.code == 2
    assert flag in result.stderr and allowed in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == b""


def test_backoff_survives_any_attempt_number():
    """Backoff().delay(1100) (a large --max-attempts in the library) is capped, not an overflow."""
    assert 0 <= Backoff().delay(1100) <= Backoff().cap
    assert Backoff(base=0).delay(10**9) == 0


def test_created_at_out_of_range_lists_the_run_without_a_date(emulator, thread_server):
    """`failed` meeting createdAt 1e20, 1e300 and -1e20 ms: the runs listed, created_at null."""
    for n in range(3):
        emulator.add_run(Run(id=f"wild-{n}", flow_id="flow-w"))
    emulator.faults = Faults(list_script=["wild_dates"])
    result = run_cli(["failed", "--flow-id", "flow-w", "--rate", "0"], env=cli_env(thread_server))
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = parse_lines(result.stdout)
    assert sorted(line["run_id"] for line in lines) == ["wild-0", "wild-1", "wild-2"]
    assert {line["created_at"] for line in lines} == {None}


def test_sigterm_during_a_listing_exits_130_quietly(emulator, thread_server):
    """`failed --rate 0` stopped by SIGTERM mid-listing: exit 130, whole lines, one stderr line."""
    for n in range(3000):
        emulator.add_run(Run(id=f"many-{n:04d}", flow_id="flow-m"))
    emulator.faults = Faults(latency=0.02)
    proc = spawn_cli(["failed", "--flow-id", "flow-m", "--rate", "0"], env=cli_env(thread_server))
    proc.stdin.close()
    first = proc.stdout.readline()  # the listing is under way
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 130, stderr
    lines = parse_lines(first + rest)
    assert 0 < len(lines) < 3000
    assert stderr.count("\n") == 1 and "SIGTERM" in stderr, stderr
    proc.stdout.close()
    proc.stderr.close()


def _close_stderr():
    """For the child: start with no stderr at all, as `2>&-` does."""
    os.close(2)


def test_a_closed_stderr_neither_crashes_nor_spills_onto_stdout(thread_server):
    """`2>&-`: the job runs, exit 0, and stdout holds only the JSON lines (no human line)."""
    done = subprocess.run(
        [sys.executable, "-m", "bulkretry", "retry", "--rate", "0"],
        input=b"closed-1\n",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=cli_env(thread_server),
        timeout=30,
        check=False,
        preexec_fn=_close_stderr,
    )
    assert done.returncode == 0
    lines = parse_lines(done.stdout)
    assert [line["event"] for line in lines] == ["retriggered", "summary"]


def _default_sigint():
    """For the child: Ctrl-C acts as in a terminal, even if this test runs with it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_a_signal_during_start_up_imports_exits_130_without_a_traceback():
    """SIGINT while the CLI is still importing its modules: exit 130 and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "bulkretry", "retry", "--dry-run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
        preexec_fn=_default_sigint,  # noqa: PLW1509 - sets one signal disposition
    )
    # -X importtime reports each import as it ends: signal once a heavy one is done.
    heavy = {b"anyio", b"orjson", b"structlog"}
    for line in proc.stderr:
        if line.rsplit(b"|", 1)[-1].strip() in heavy:
            break
    else:
        pytest.fail("no heavy import seen")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr.decode()[-2000:]
    assert b"Traceback" not in stderr and b"KeyboardInterrupt" not in stderr


def test_a_full_disk_under_a_listing_leaves_whole_lines_and_one_message(
    emulator, thread_server, tmp_path
):
    """`bulkretry failed > file` on a full disk: exit 1, one line, the file holds whole lines."""
    for n in range(300):
        emulator.add_run(Run(id=f"full-{n:04d}", flow_id="flow-f"))
    output = tmp_path / "listing.jsonl"
    with output.open("wb") as sink:
        done = run_forked(  # files it writes stop growing at 10 kB (short writes, then EFBIG)
            ["failed", "--flow-id", "flow-f", "--rate", "0"],
            stdout=sink,
            env=cli_env(thread_server),
            file_size_limit=10_000,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "cannot write the JSON lines" in stderr and "Traceback" not in stderr
    written = output.read_bytes()
    assert written.endswith(b"\n") and len(written) <= 10_000
    assert 0 < len(parse_lines(written)) < 300


def test_sigterm_stops_a_listing_whose_reader_has_stopped(emulator, thread_server):
    """Nobody reads `bulkretry failed`'s stdout: SIGTERM still exits 130 at once, whole lines."""
    for n in range(3000):
        emulator.add_run(Run(id=f"unread-{n:04d}", flow_id="flow-u"))
    proc = spawn_cli(["failed", "--flow-id", "flow-u", "--rate", "0"], env=cli_env(thread_server))
    proc.stdin.close()
    deadline = time.monotonic() + 20
    while len(emulator.stats.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the pipe is full: the listing waits on its reader
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 130
    written = proc.stdout.read()
    assert written.endswith(b"\n") and 0 < len(parse_lines(written)) < 3000
    assert b"Traceback" not in proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


def test_a_since_reaching_before_year_one_is_a_usage_error():
    """`failed --since 99999999999h` (past any date) is exit 2 naming --since, not an overflow."""
    result = run_cli(["failed", "--flow-id", "x", "--since", "99999999999h"], env=cli_env())
    assert result.code == 2
    assert "--since" in result.stderr and "Traceback" not in result.stderr
