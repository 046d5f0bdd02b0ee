"""Hostile servers: huge, endless and compressed-bomb answers are read only up to a cap."""

import subprocess
import sys
import time

import pytest

from bulkretry.emulator import Faults

from .conftest import API_KEY, CLIENT_SECRET, cli_env, parse_lines, run_cli

BODY = 100 * 2**20
"""What the emulator sends (or inflates to): far beyond any cap, small enough for CI."""
PEAK_KIB = 200 * 1024
"""The CLI's peak memory must stay below this while reading a ``BODY``-sized answer."""

_MEASURE = """\
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], input=sys.stdin.buffer.read(), capture_output=True)
sys.stdout.buffer.write(done.stdout)
sys.stderr.buffer.write(done.stderr)
sys.stderr.write(f"\\npeak {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
sys.exit(done.returncode)
"""


def run_measured(args, env, stdin=b""):
    """Run the CLI under a fresh parent that reports its peak memory; (code, lines, stderr, KiB)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "bulkretry", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    stderr, _, peak = done.stderr.decode().rpartition("\npeak ")
    return done.returncode, parse_lines(done.stdout), stderr, int(peak)


@pytest.mark.parametrize("fault", ["huge_after", "endless_after", "bomb_after"])
def test_an_oversized_answer_to_a_retrigger_is_uncertain_and_memory_stays_flat(
    emulator, thread_server, fault
):
    """A 100 MB, endless or gzip-bomb answer after the re-trigger: `uncertain`, memory bounded."""
    emulator.faults = Faults(script={"big-1": [fault]}, body_size=BODY)
    args = ["retry", "--rate", "0", "--timeout", "20", "--quiet"]
    code, lines, stderr, peak = run_measured(args, cli_env(thread_server), b"big-1\nfine-1\n")
    assert code == 1, stderr
    outcomes = {line["run_id"]: line for line in lines[:-1]}
    assert outcomes["big-1"]["event"] == "uncertain"
    assert "cap" in outcomes["big-1"]["error"]
    assert outcomes["fine-1"]["event"] == "retriggered"
    assert emulator.stats.retriggers["big-1"] == 1  # applied once, never resent
    assert peak < PEAK_KIB, f"peak memory {peak} KiB"
    assert "Traceback" not in stderr


def test_an_oversized_listing_page_stops_the_listing_with_exit_1(emulator, thread_server):
    """`bulkretry failed` meeting a gzip-bomb page: exit 1 and one message, memory bounded."""
    emulator.faults = Faults(list_script=["bomb_after"], body_size=BODY)
    args = ["failed", "--flow-id", "flow-x", "--rate", "0"]
    code, lines, stderr, peak = run_measured(args, cli_env(thread_server))
    assert code == 1, stderr
    assert lines == []
    assert "cap" in stderr and "Traceback" not in stderr
    assert peak < PEAK_KIB, f"peak memory {peak} KiB"


def test_an_oversized_token_answer_is_asked_again(emulator, thread_server):
    """IMS answering a huge body once: read up to the cap, the token is asked for again."""
    emulator.faults = Faults(ims_script=["huge_after"], body_size=BODY)
    env = cli_env(thread_server, AEP_CLIENT_ID=API_KEY, AEP_CLIENT_SECRET=CLIENT_SECRET)
    code, lines, stderr, peak = run_measured(["retry", "--rate", "0"], env, b"tok-1\n")
    assert code == 0, stderr
    assert [line["event"] for line in lines] == ["retriggered", "summary"]
    assert emulator.stats.token_requests == 2
    assert peak < PEAK_KIB, f"peak memory {peak} KiB"


def test_the_timeout_bounds_the_whole_answer_not_each_read(emulator, thread_server):
    """An answer trickling one byte every 50 ms for ever: `--timeout 0.4` ends it, `uncertain`."""
    emulator.faults = Faults(script={"slow-1": ["trickle_after"]})
    args = ["retry", "--rate", "0", "--timeout", "0.4", "--quiet"]
    started = time.monotonic()
    result = run_cli(args, env=cli_env(thread_server), stdin=b"slow-1\n")
    assert time.monotonic() - started < 10
    assert result.code == 1, result.stderr
    [line] = result.events("uncertain")
    assert line["run_id"] == "slow-1"
    assert emulator.stats.retriggers["slow-1"] == 1


def test_a_trickling_listing_page_ends_at_the_timeout(emulator, thread_server):
    """`bulkretry failed` meeting a page that never finishes: exit 1 after --timeout, no hang."""
    emulator.faults = Faults(list_script=["trickle_after"])
    args = [
        "failed",
        "--flow-id",
        "flow-t",
        "--rate",
        "0",
        "--timeout",
        "0.4",
        "--max-attempts",
        "1",
    ]
    started = time.monotonic()
    result = run_cli(args, env=cli_env(thread_server))
    assert time.monotonic() - started < 10
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
