"""--output and stdout: never a file the job needs, never truncated early, only whole lines."""

import subprocess
import time

import pytest

from bulkretry.emulator import Faults

from .conftest import cli_env, parse_lines, run_cli, spawn_cli


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
    import sys  # noqa: PLC0415 - only this helper needs it

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
