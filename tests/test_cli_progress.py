"""What a person at a terminal sees: progress and a summary on stderr, JSON only on stdout."""

import fcntl
import os
import pty
import struct
import subprocess
import termios

from bulkretry.cli.progress import count_run_lines
from bulkretry.emulator import Faults, Lifecycle, Run

from .conftest import cli_env, parse_lines, run_cli
from .forked import ForkedProcess

FAILED = (("CONNECTOR-1001-500", "The connection to the source failed: read timed out."),)


def run_with_tty_stderr(args, env):
    """Run the CLI with stderr on a pseudo-terminal; return exit code, stdout, terminal text."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = ForkedProcess(args, env=env, stdin=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    stdout = proc.stdout.read()
    code = proc.wait(timeout=60)
    os.close(controller)
    return code, stdout, seen.decode(errors="replace")


def test_progress_goes_to_the_terminal_and_stdout_stays_json(thread_server, tmp_path):
    """Under a TTY, stderr shows done/total and counts; stdout has only JSON lines."""
    ids = tmp_path / "ids.txt"
    ids.write_text("# header\n" + "".join(f"tty-{n}\n" for n in range(30)))
    code, stdout, terminal = run_with_tty_stderr(
        ["retry", str(ids), "--rate", "40"], cli_env(thread_server)
    )
    assert code == 0, terminal
    lines = parse_lines(stdout)
    assert lines[-1]["event"] == "summary" and lines[-1]["retriggered"] == 30
    assert "/30" in terminal  # done/total, known from the file
    assert "ok " in terminal and "failed 0" in terminal
    assert "30 re-triggered, 0 failed, 0 uncertain, 0 skipped of 30" in terminal


def test_progress_while_waiting_counts_the_new_runs_as_they_end(emulator, thread_server):
    """With --wait the full bar goes on saying how many new runs recovered or failed again."""
    emulator.lifecycle = Lifecycle(seconds=0.05)
    for run_id in ("w-ok-1", "w-ok-2"):
        emulator.add_run(Run(id=run_id, flow_id="flow", input_records=5, errors=FAILED))
    flags = ["--wait", "--poll-interval", "0.05", "--rate", "0", "--progress"]
    proc = ForkedProcess(
        ["retry", *flags],
        env=cli_env(thread_server),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = proc.communicate(b"w-ok-1\nw-ok-2\n", timeout=60)
    assert proc.returncode == 0, stderr
    assert [line["status"] for line in parse_lines(stdout) if line["event"] == "finished"] == [
        "success",
        "success",
    ]
    assert "recovered 2 failed again 0 waiting 0" in stderr.decode()


def test_no_progress_when_stderr_is_not_a_terminal(thread_server):
    """A scheduler's stderr gets only the closing summary line; --quiet removes that too."""
    env = cli_env(thread_server)
    plain = run_cli(["retry", "--rate", "0"], env=env, stdin=b"np-1\n")
    assert plain.stderr.startswith("bulkretry: 1 re-triggered") and "\r" not in plain.stderr
    quiet = run_cli(["retry", "--rate", "0", "--quiet"], env=env, stdin=b"np-2\n")
    assert quiet.stderr == ""


def test_journal_runs_say_how_to_resume(emulator, thread_server, tmp_path):
    """When something is left to do, the closing line gives the command that resumes."""
    emulator.auto_create = False
    journal = tmp_path / "j.journal"
    result = run_cli(
        ["retry", "--journal", str(journal)], env=cli_env(thread_server), stdin=b"gone-1\n"
    )
    assert result.code == 1
    assert f"to resume: run the same command again, same input, with --journal {journal}" in (
        result.stderr
    )


def test_log_level_debug_shows_retries(emulator, thread_server):
    """--log-level debug explains each retry on stderr."""
    emulator.faults = Faults(retry_after=0, script={"lg-1": ["unavailable", "ok"]})
    result = run_cli(["retry", "--log-level", "debug"], env=cli_env(thread_server), stdin=b"lg-1\n")
    assert result.code == 0
    assert "lg-1: attempt 1 failed" in result.stderr


def test_count_run_lines_only_for_regular_files(tmp_path):
    """Totals are counted for files (comments and blanks excluded), never for stdin."""
    path = tmp_path / "ids.txt"
    path.write_text("# c\n\na\nb\n  \nc")
    assert count_run_lines([str(path)]) == 3
    assert count_run_lines(["-"]) is None
    assert count_run_lines([]) is None


def test_no_resume_hint_when_everything_is_done(thread_server, tmp_path):
    """A rerun that only skips already re-triggered runs does not suggest resuming."""
    journal = tmp_path / "done.journal"
    env = cli_env(thread_server)
    first = run_cli(["retry", "--journal", str(journal), "--rate", "0"], env=env, stdin=b"ok-1\n")
    again = run_cli(["retry", "--journal", str(journal), "--rate", "0"], env=env, stdin=b"ok-1\n")
    assert (first.code, again.code) == (0, 0)
    assert again.events("skipped")[0]["reason"] == "already-retriggered"
    assert "to resume" not in again.stderr
