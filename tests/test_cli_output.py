"""--output and stdout: never a file the job needs, never truncated early, only whole lines."""

import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from bulkretry.emulator import Faults

from .conftest import cli_env, parse_lines, run_cli, spawn_cli
from .forked import run_forked


def wait_until(condition, limit=20.0):
    """Poll ``condition`` from sync test code; fail the test if it never holds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# --output naming a file the job reads or keeps


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_output_naming_the_journal_is_a_usage_error_that_touches_nothing(
    emulator, thread_server, tmp_path, how
):
    """--output = --journal (directly, via a symlink or a hard link): exit 2, journal intact."""
    journal = tmp_path / "job.journal"
    record = b'{"run_id":"j-1","state":"retriggered","new_run_id":"n","etag":"e"}\n'
    journal.write_bytes(record)
    output = tmp_path / "out.jsonl"
    if how == "same":
        output = journal
    elif how == "symlink":
        output.symlink_to(journal)
    else:
        output.hardlink_to(journal)
    args = ["retry", "--rate", "0", "--journal", str(journal), "--output", str(output)]
    result = run_cli(args, env=cli_env(thread_server), stdin=b"j-1\nj-2\n")
    assert result.code == 2, result.stderr
    assert "--output" in result.stderr and "--journal" in result.stderr
    assert "Traceback" not in result.stderr
    assert journal.read_bytes() == record
    assert emulator.stats.requests == []


def test_output_naming_a_journal_not_yet_created_is_refused(thread_server, tmp_path):
    """A first run with --journal X --output X is refused too: the resume would find nothing."""
    journal = tmp_path / "new.journal"
    args = ["retry", "--journal", str(journal), "--output", str(tmp_path / "." / "new.journal")]
    result = run_cli(args, env=cli_env(thread_server), stdin=b"n-1\n")
    assert result.code == 2, result.stderr
    assert not journal.exists()


@pytest.mark.parametrize("via", ["path", "symlink", "stdin"])
def test_output_naming_an_input_file_is_refused_and_the_input_kept(
    emulator, thread_server, tmp_path, via
):
    """--output = an input file (named, through a symlink, or redirected to stdin): exit 2."""
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"i-1\ni-2\n")
    link = tmp_path / "link.txt"
    link.symlink_to(ids)
    env = cli_env(thread_server)
    if via == "stdin":
        with ids.open("rb") as stdin:
            done = subprocess.run(
                [*spawn_args(), "retry", "--output", str(link)],
                stdin=stdin,
                capture_output=True,
                env=env,
                timeout=30,
                check=False,
            )
        code, stderr = done.returncode, done.stderr.decode()
    else:
        named = ids if via == "path" else link
        other = link if via == "path" else ids
        result = run_cli(["retry", str(named), "--output", str(other)], env=env)
        code, stderr = result.code, result.stderr
    assert code == 2, stderr
    assert "input" in stderr
    assert ids.read_bytes() == b"i-1\ni-2\n"
    assert emulator.stats.requests == []


def spawn_args():
    """The command line prefix that runs the installed CLI."""
    return [sys.executable, "-m", "bulkretry"]


def test_a_second_job_refused_by_the_journal_lock_leaves_the_first_jobs_output(
    emulator, thread_server, tmp_path
):
    """Job B with job A's --journal and --output exits 2 without truncating A's output file."""
    emulator.faults = Faults(latency=0.05)
    journal, output = tmp_path / "a.journal", tmp_path / "a.jsonl"
    args = ["retry", "--rate", "0", "--journal", str(journal), "--output", str(output)]
    env = cli_env(thread_server)
    first = spawn_cli(args, env=env)
    first.stdin.write(b"".join(b"a-%d\n" % n for n in range(40)))
    first.stdin.flush()  # stdin stays open: job A keeps running
    wait_until(lambda: output.exists() and output.read_bytes().count(b"\n") >= 40)
    written = output.read_bytes()
    second = run_cli(args, env=env, stdin=b"b-1\n")
    assert second.code == 2, second.stderr
    assert "in use" in second.stderr
    assert output.read_bytes() == written  # not one line of job A's lost
    first.stdin.close()
    assert first.wait(timeout=30) == 0
    lines = parse_lines(output.read_bytes())
    assert len(lines) == 41 and lines[-1]["event"] == "summary"
    first.stdout.close()
    first.stderr.close()


def test_output_is_truncated_once_the_job_starts(thread_server, tmp_path):
    """An existing --output is emptied when the job runs, like `>`: no stale lines remain."""
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"stale line\n" * 50)
    result = run_cli(["retry", "--output", str(output)], env=cli_env(thread_server), stdin=b"t-1\n")
    assert result.code == 0, result.stderr
    assert [line["event"] for line in parse_lines(output.read_bytes())] == [
        "retriggered",
        "summary",
    ]


# Cancel-safe, whole-line output under signals and full disks


def test_sigterm_mid_stream_loses_no_line_the_summary_counts(emulator, thread_server):
    """SIGTERM while 8 workers stream 3000 IDs: stdout has exactly the lines the summary counts."""
    emulator.faults = Faults(latency=0.05)
    proc = spawn_cli(["retry", "--rate", "0", "--concurrency", "8"], env=cli_env(thread_server))
    proc.stdin.write(b"".join(b"busy-%d\n" % n for n in range(3000)))
    proc.stdin.close()
    wait_until(lambda: len(emulator.stats.requests) >= 80)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(timeout=30) == 130, stderr
    lines = parse_lines(stdout)
    summary = lines[-1]
    assert summary["event"] == "summary"
    counted = Counter(line["event"] for line in lines[:-1])
    for event in ("retriggered", "failed", "uncertain", "skipped"):
        assert counted[event] == summary[event], event
    assert summary["total"] == len(lines) - 1 == 3000


def _fill_stdout_then_signal_twice(emulator, proc, gap):
    """Let the job fill its stdout pipe, then SIGTERM twice; return how long the exit took."""
    proc.stdin.write(b"".join(b"twice-%d\n" % n for n in range(3000)))
    proc.stdin.close()
    wait_until(lambda: len(emulator.stats.requests) >= 400)
    proc.send_signal(signal.SIGTERM)
    time.sleep(gap)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 130
    return time.monotonic() - sent


def test_a_second_signal_exits_at_once_with_a_stopped_reader(emulator, thread_server):
    """Nobody reads stdout: a second SIGTERM still exits 130 at once; stdout holds whole lines."""
    proc = spawn_cli(["retry", "--rate", "0", "--concurrency", "8"], env=cli_env(thread_server))
    took = _fill_stdout_then_signal_twice(emulator, proc, gap=0.3)
    assert took < 2
    stdout = proc.stdout.read()
    assert stdout.endswith(b"\n")
    assert all(line["event"] != "summary" for line in parse_lines(stdout))
    assert b"Traceback" not in proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


def test_a_second_signal_never_splices_lines_for_a_slow_reader(emulator, thread_server):
    """A reader taking 4 KB at a time: SIGTERM twice leaves only whole JSON lines on stdout."""
    proc = spawn_cli(["retry", "--rate", "0", "--concurrency", "8"], env=cli_env(thread_server))
    received = bytearray()

    def read_slowly():
        while chunk := proc.stdout.read1(4096):
            received.extend(chunk)
            time.sleep(0.005)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    _fill_stdout_then_signal_twice(emulator, proc, gap=0.05)
    reader.join(timeout=10)
    assert bytes(received).endswith(b"\n")
    parse_lines(bytes(received))  # every line one JSON object: nothing torn or spliced
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.parametrize("target", ["--output", "stdout"])
def test_a_full_disk_leaves_only_whole_lines(thread_server, tmp_path, target):
    """Output that no longer fits (RLIMIT_FSIZE): whole lines or none, one error line, exit 1."""
    output = tmp_path / "out.jsonl"
    args = ["retry", "--rate", "0", "--quiet"]
    with output.open("wb") as sink:
        done = run_forked(  # files it writes stop growing at 10 kB (EFBIG, a full disk)
            args + (["--output", str(output)] if target == "--output" else []),
            input=b"".join(b"disk-%d\n" % n for n in range(200)),
            stdout=subprocess.DEVNULL if target == "--output" else sink,
            env=cli_env(thread_server),
            file_size_limit=10_000,
        )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "cannot write the JSON lines" in stderr and "Traceback" not in stderr
    written = output.read_bytes()
    assert 0 < len(written) <= 10_000
    assert written.endswith(b"\n")
    parse_lines(written)
