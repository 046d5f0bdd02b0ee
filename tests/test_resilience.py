"""Failure semantics under stress: fault soaks, kill -9 and resume, signals, hostile input.

The invariant every test here defends: a run is never re-triggered twice, every run ID
read gets exactly one final outcome, and a run the server applied is never reported
``failed``.
"""

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import orjson
import pytest

from bulkretry import Failed, Retriggered, Uncertain
from bulkretry._text import EXCERPT
from bulkretry.emulator import Faults

from .conftest import cli_env, read_journal, run_cli
from .test_api import collect

pytestmark = pytest.mark.anyio

SOAK_FAULTS = Faults(
    throttle=0.05,
    unavailable=0.05,
    drop_before=0.02,
    error_after=0.01,
    drop_after=0.01,
    garbled_after=0.01,
    retry_after=0,
)
BASE_PATH = "/data/foundation/flowservice"
KILLS = 4


def tolerant_lines(raw):
    """JSON lines of a process that may have been killed mid-write: a torn tail is dropped."""
    lines = []
    for line in raw.splitlines():
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return lines


def wait_until(condition, limit=20.0):
    """Poll ``condition`` from sync test code; fail the test if it never holds."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def start_cli(args, env, **popen):
    """Start ``python -m bulkretry`` without waiting for it."""
    return subprocess.Popen([sys.executable, "-m", "bulkretry", *args], env=env, **popen)


# Fault soak


async def test_fault_soak_never_duplicates_and_never_hides_an_applied_retrigger(
    emulator, api_settings
):
    """3000 IDs through every fault: one outcome each, no run applied twice, none applied failed."""
    emulator.faults = SOAK_FAULTS
    ids = [f"soak-{n}" for n in range(3000)]
    with anyio.fail_after(60):
        outcomes = await collect(ids, api_settings, rate=0, concurrency=32)
    per_id = Counter(o.run_id for o in outcomes)
    assert set(per_id) == set(ids)
    assert max(per_id.values()) == 1
    assert max(emulator.stats.retriggers.values()) == 1
    by_id = {o.run_id: o for o in outcomes}
    for run_id in emulator.stats.retriggers:
        assert isinstance(by_id[run_id], Retriggered | Uncertain), by_id[run_id]
    for outcome in outcomes:
        if isinstance(outcome, Retriggered):
            assert emulator.stats.retriggers[outcome.run_id] == 1
            assert outcome.new_run_id in emulator.runs
        if isinstance(outcome, Failed):  # only safe faults, every attempt: never applied
            assert outcome.status in {429, 503} or outcome.status is None
    kinds = Counter(type(o).__name__ for o in outcomes)
    assert kinds["Retriggered"] > 2500 and kinds["Uncertain"] > 0  # the faults really fired


def test_fault_soak_through_the_cli_keeps_the_journal_true(emulator, thread_server, tmp_path):
    """Via the CLI with a journal: each ID's last journal record matches its output line."""
    emulator.faults = SOAK_FAULTS
    journal = tmp_path / "soak.journal"
    ids = [f"cli-soak-{n}" for n in range(300)]
    result = run_cli(
        [
            "retry",
            "--journal",
            str(journal),
            "--rate",
            "0",
            "--concurrency",
            "32",
            "--max-attempts",
            "3",
        ],
        env=cli_env(thread_server),
        stdin="\n".join(ids).encode() + b"\n",
    )
    assert result.code in {0, 1}, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.lines[:-1]
    assert sorted(line["run_id"] for line in lines) == sorted(ids)
    assert result.summary["total"] == len(ids)
    assert max(emulator.stats.retriggers.values()) == 1
    records = read_journal(journal)
    for line in lines:
        if line["event"] == "failed":  # recorded, and read back as "try again": absent
            assert line["run_id"] not in records
            continue
        record = records[line["run_id"]]
        assert record.state == line["event"], (line, record)
        if line["event"] == "retriggered":
            assert (record.new_run_id, record.etag) == (line["new_run_id"], line["etag"])
    for run_id in emulator.stats.retriggers:
        assert records[run_id].state in {"retriggered", "uncertain"}
    assert result.code == (1 if result.summary["uncertain"] or result.summary["failed"] else 0)


# kill -9 and resume


def kill_repeatedly(args, env, emulator, tmp_path):
    """Run the CLI ``KILLS`` times, each killed with SIGKILL at a seeded random moment.

    Returns how many runs were really killed, and the run IDs those runs reported
    re-triggered (with the new run ID), read from whatever output survived.
    """
    rng = random.Random(20240501)  # reproducible kill moments
    retriggered: dict[str, str] = {}
    killed = 0
    ids = set(Path(args[1]).read_text().split())
    journal = Path(args[args.index("--journal") + 1])
    for attempt in range(KILLS):
        out = tmp_path / f"out-{attempt}.jsonl"
        before = len(emulator.stats.requests)
        with out.open("wb") as sink:
            proc = start_cli(args, env, stdout=sink, stderr=subprocess.DEVNULL)
            wait_until(  # the run is under way (or already over) ...
                lambda p=proc, b=before: len(emulator.stats.requests) > b or p.poll() is not None
            )
            time.sleep(rng.uniform(0.0, 0.4))  # ... then a random moment later, kill -9
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        killed += proc.returncode == -signal.SIGKILL
        for line in tolerant_lines(out.read_bytes()):
            if line.get("event") == "retriggered":
                retriggered[line["run_id"]] = line["new_run_id"]
        assert set(read_journal(journal)) <= ids  # reads cleanly after every kill
    return killed, retriggered


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_never_duplicates(emulator, thread_server, tmp_path):
    """Kill -9 four times mid-job, resume each time from the journal: no run twice, none lost."""
    emulator.faults = Faults(latency=0.05)
    ids = [f"kill-{n}" for n in range(400)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    journal = tmp_path / "kill.journal"
    args = ["retry", str(ids_file), "--journal", str(journal), "--rate", "0", "--concurrency", "8"]
    env = cli_env(thread_server)
    killed, retriggered_somewhere = kill_repeatedly(args, env, emulator, tmp_path)
    assert killed >= 3  # the job was really cut short, not allowed to finish
    before_final = read_journal(journal)
    assert len(before_final) < len(ids)  # work was left for the final run
    final = run_cli(args, env=env, timeout=60)
    assert final.code in {0, 1}, final.stderr
    lines = {line["run_id"]: line for line in final.lines[:-1]}
    assert sorted(lines) == sorted(ids) and final.summary["total"] == len(ids)

    assert max(emulator.stats.retriggers.values()) == 1  # no run re-triggered twice
    assert set(emulator.stats.retriggers) <= set(ids)
    for run_id in ids:
        line = lines[run_id]
        kind = line["event"], line.get("reason")
        if kind == ("retriggered", None):
            assert run_id not in before_final or before_final[run_id].state == "failed"
            assert emulator.stats.retriggers[run_id] == 1
        elif kind == ("skipped", "already-retriggered"):
            assert before_final[run_id].state == "retriggered"
            assert emulator.stats.retriggers[run_id] == 1
            assert line["new_run_id"] in emulator.runs
            if run_id in retriggered_somewhere:
                assert line["new_run_id"] == retriggered_somewhere[run_id]
        elif kind == ("uncertain", None):
            assert before_final[run_id].state in {"intent", "uncertain"}
            assert emulator.stats.retriggers[run_id] <= 1
        else:
            pytest.fail(f"{run_id}: unexpected final line {line}")
    uncertain = [run_id for run_id, line in lines.items() if line["event"] == "uncertain"]
    assert any(emulator.stats.retriggers[run_id] for run_id in uncertain)  # the kills landed
    # between a re-trigger being applied and its outcome being recorded, and it was not resent
    for run_id in emulator.stats.retriggers:  # every applied re-trigger is reported as such
        assert lines[run_id]["event"] in {"retriggered", "skipped", "uncertain"}
        assert lines[run_id].get("reason") in {None, "already-retriggered"}


# Signals


def test_a_second_signal_exits_at_once_leaving_a_clean_journal(emulator, thread_server, tmp_path):
    """SIGTERM then SIGINT while requests hang: exit 130 at once; the journal reads and resumes."""
    hanging = [f"hang-{n}" for n in range(4)]
    emulator.faults = Faults(script={run_id: ["timeout_after"] for run_id in hanging})
    ids = [*hanging, *(f"later-{n}" for n in range(20))]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    journal = tmp_path / "sig.journal"
    args = ["retry", str(ids_file), "--journal", str(journal), "--rate", "0", "--concurrency", "4"]
    proc = start_cli(
        args, cli_env(thread_server), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    wait_until(lambda: len(emulator.stats.retriggers) == len(hanging))  # four in flight, held
    proc.send_signal(signal.SIGTERM)
    first_warning = proc.stderr.readline()
    assert b"SIGTERM" in first_warning
    time.sleep(0.2)
    assert proc.poll() is None  # still waiting for the requests in flight (timeout is 30 s)
    sent_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    assert time.monotonic() - sent_at < 3
    stderr = proc.stderr.read()
    proc.stderr.close()
    assert b"Traceback" not in stderr

    raw = journal.read_bytes()
    assert raw.endswith(b"\n")
    records = [orjson.loads(line) for line in raw.splitlines()]  # every line whole
    assert {(r["run_id"], r["state"]) for r in records} == {(i, "intent") for i in hanging}
    emulator.faults = Faults()
    resumed = run_cli(args, env=cli_env(thread_server))
    assert resumed.code == 1, resumed.stderr
    events = {line["run_id"]: line["event"] for line in resumed.lines[:-1]}
    assert events == {run_id: "uncertain" if run_id in hanging else "retriggered" for run_id in ids}
    assert emulator.stats.retriggers == dict.fromkeys(ids, 1)


# Hostile input


def test_hostile_lines_are_skipped_safely(emulator, thread_server, tmp_path):
    """Bad UTF-8, NULs, a 10 MB line and path tricks: skipped/invalid, short ASCII, nothing sent."""
    hostile = tmp_path / "hostile.txt"
    with hostile.open("wb") as sink:
        sink.write(b"caf\xc3\x28-\xff\xfe\n")
        sink.write(b"nul\x00byte\n")
        sink.write(b"\x00\x00\x00\n")
        sink.write(b"A" * (10 * 1024 * 1024) + b"\n")
        sink.write(b"../x\n")
        sink.write(b"a?b\n")
        sink.write(b"a#b\n")
        sink.write(b"%2e%2e\n")
        sink.write(b"..%2f..%2fetc\n")
        sink.write(b'{"run_id": "../../runs"}\n')
        sink.write(b"\x1b[31mred\x1b[0m\n")
        sink.write(b"good-1\n")
    result = run_cli(["retry", str(hostile), "--rate", "0"], env=cli_env(thread_server))
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert len(result.stdout) < 10_000  # the 10 MB line was not echoed
    lines = result.lines[:-1]
    assert result.summary["total"] == len(lines) == 12
    *bad, good = lines
    assert good["event"] == "retriggered" and good["run_id"] == "good-1"
    for line in bad:
        assert (line["event"], line["reason"]) == ("skipped", "invalid"), line
        shown = line["run_id"]
        assert shown.isascii() and shown.isprintable() and len(shown) <= 4 * EXCERPT + 3, shown
    paths = {(r.method, r.path, r.query.get("op")) for r in emulator.stats.requests}
    assert paths == {("POST", f"{BASE_PATH}/runs/good-1/action", "re-trigger")}


def test_a_binary_file_gives_only_invalid_lines(emulator, thread_server, tmp_path):
    """64 KB of random bytes: only skipped/invalid lines, exit 1, no traceback, nothing sent."""
    noise = tmp_path / "noise.bin"
    noise.write_bytes(random.Random(4).randbytes(64 * 1024))
    result = run_cli(["retry", str(noise), "--rate", "0"], env=cli_env(thread_server))
    assert result.code == 1
    assert "Traceback" not in result.stderr
    lines = result.lines[:-1]
    assert lines and result.summary["total"] == len(lines)
    for line in lines:
        assert (line["event"], line["reason"]) == ("skipped", "invalid"), line
        assert line["run_id"].isascii() and line["run_id"].isprintable()
    assert emulator.stats.requests == []
