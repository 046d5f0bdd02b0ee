"""The journal: tolerant reading, one writer at a time, intent before send, and resume rules."""

import fcntl
import os
import signal
import time
import tracemalloc

import anyio
import orjson
import pytest

import bulkretry
from bulkretry import (
    Failed,
    JobSettings,
    JournalLockedError,
    Retriggered,
    Skipped,
    Uncertain,
)
from bulkretry._backoff import Backoff
from bulkretry._dedup import SeenIds
from bulkretry._journal import Journal, JournalIndex, Record
from bulkretry.emulator import Faults

from .conftest import cli_env, parse_lines, read_journal, run_cli, spawn_cli
from .forked import run_forked

pytestmark = pytest.mark.anyio

FAST = Backoff(base=0)


async def poll(condition, limit=5.0):
    """Wait until ``condition()`` holds; the emulator offers no event to wait on."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - polling state another component owns
            await anyio.sleep(0.005)


def journal_lines(path):
    """Every line of a journal file, parsed; fails the test on a line that is not JSON."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def seed_journal(path):
    """A journal holding each state the resume rules distinguish, written by the real writer."""
    with Journal(path) as journal:
        journal.intent("done-1")
        journal.outcome(
            Retriggered(
                run_id="done-1", new_run_id="new-of-done-1", etag='"etag-1"', attempts=1, status=200
            )
        )
        journal.intent("lost-1")  # sent, then the process died: no outcome
        journal.intent("maybe-1")
        journal.outcome(
            Uncertain(
                run_id="maybe-1", status=500, error="FLOW-1000-500: An unexpected error", attempts=1
            )
        )
        journal.intent("fail-1")
        journal.outcome(
            Failed(run_id="fail-1", status=429, error="429050: Too many requests", attempts=5)
        )


RESUME_IDS = b"done-1\nlost-1\nmaybe-1\nfail-1\nfresh-1\n"


# Reading


def test_missing_journal_reads_as_empty(tmp_path):
    """A journal that does not exist yet means a fresh job."""
    assert read_journal(tmp_path / "none.journal") == {}


def test_last_record_wins(tmp_path):
    """The latest line about a run ID decides its state, whatever came before."""
    path = tmp_path / "j"
    with Journal(path) as journal:
        journal.intent("a")
        journal.outcome(Failed(run_id="a", status=503, error="unavailable", attempts=1))
        journal.intent("a")
        journal.outcome(
            Retriggered(run_id="a", new_run_id="new-a", etag='"e"', attempts=2, status=200)
        )
        journal.intent("b")
        journal.outcome(
            Retriggered(run_id="b", new_run_id="new-b", etag='"f"', attempts=1, status=200)
        )
        journal.intent("b")  # only --retry-uncertain paths re-send, but the rule is the same
    records = read_journal(path)
    assert records["a"] == Record("retriggered", new_run_id="new-a", etag='"e"')
    assert records["b"] == Record("intent")


def test_torn_last_line_is_ignored(tmp_path):
    """A record cut short by kill -9 mid-write is skipped; the lines before it count."""
    path = tmp_path / "j"
    path.write_bytes(
        b'{"run_id":"a","state":"intent"}\n'
        b'{"run_id":"a","state":"retriggered","new_run_id":"n","etag":"\\"e\\""}\n'
        b'{"run_id":"b","state":"retrig'
    )
    assert read_journal(path) == {"a": Record("retriggered", new_run_id="n", etag='"e"')}


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json at all",
        b"\xff\xfe\x00 invalid utf-8",
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        b"42",
        b'{"state": "intent"}',
        b'{"run_id": "g"}',
        b'{"run_id": 7, "state": "intent"}',
        b'{"run_id": "g", "state": "exploded"}',
        b'{"run_id": "g", "state": []}',
        b'{"run_id": "g", "state": {"nested": true}}',
        b'{"run_id": "g", "state": null}',
        b"",
        b"   ",
    ],
)
def test_garbage_lines_are_skipped_without_raising(tmp_path, garbage):
    """Any line that is not a well-formed record is ignored, and the good lines around it count."""
    path = tmp_path / "j"
    path.write_bytes(
        b'{"run_id":"a","state":"intent"}\n' + garbage + b'\n{"run_id":"c","state":"intent"}\n'
    )
    assert read_journal(path) == {"a": Record("intent"), "c": Record("intent")}


def test_fields_of_the_wrong_type_are_dropped(tmp_path):
    """A record with odd field types still gives its state, never a non-string ID or etag.

    A recorded ``failed`` is dropped on reading: on resume it is tried again, as if unseen.
    """
    path = tmp_path / "j"
    path.write_bytes(
        b'{"run_id":"a","state":"retriggered","new_run_id":5,"etag":["x"]}\n'
        b'{"run_id":"b","state":"uncertain","status":"500","error":{}}\n'
        b'{"run_id":"c","state":"failed","status":true}\n'
    )
    assert read_journal(path) == {
        "a": Record("retriggered"),
        "b": Record("uncertain"),
    }


def test_a_torn_tail_is_closed_before_the_next_record(tmp_path):
    """Opening a journal with a torn tail ends that line, so the next record starts on its own."""
    path = tmp_path / "j"
    path.write_bytes(b'{"run_id":"a","state":"intent"}\n{"run_id":"b","sta')
    with Journal(path) as journal:
        journal.intent("c")
    assert path.read_bytes().splitlines()[1:] == [
        b'{"run_id":"b","sta',
        b'{"run_id":"c","state":"intent"}',
    ]
    assert read_journal(path) == {"a": Record("intent"), "c": Record("intent")}


def test_a_clean_journal_gains_no_blank_line_on_reopening(tmp_path):
    """Reopening a journal that ends with a newline writes nothing extra."""
    path = tmp_path / "j"
    with Journal(path) as journal:
        journal.intent("a")
    before = path.read_bytes()
    with Journal(path):
        pass
    assert path.read_bytes() == before


# One writer at a time


def test_a_second_writer_is_refused(tmp_path):
    """While one Journal holds the file, another is refused with JournalLockedError."""
    path = tmp_path / "j"
    with Journal(path):
        second = Journal(path)
        with pytest.raises(JournalLockedError, match="in use"):
            second.__enter__()
    with Journal(path) as journal:  # released on exit: the next job may write
        journal.intent("after")
    assert read_journal(path) == {"after": Record("intent")}


async def test_a_locked_journal_stops_the_job_before_any_request(emulator, api_settings, tmp_path):
    """The API raises JournalLockedError at start and sends nothing when the journal is held."""
    path = tmp_path / "j"
    with Journal(path), pytest.raises(JournalLockedError):  # noqa: PT012
        settings = JobSettings(rate=0, journal=path)
        async with bulkretry.retrigger(["x-1"], api_settings, settings, backoff=FAST) as job:
            [outcome async for outcome in job]
    assert emulator.stats.requests == []


def test_cli_exits_2_when_another_process_holds_the_journal(emulator, thread_server, tmp_path):
    """The CLI with a journal locked elsewhere: exit 2, one clear line, nothing sent or written."""
    path = tmp_path / "j"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = run_cli(
            ["retry", "--journal", str(path), "--rate", "0"],
            env=cli_env(thread_server),
            stdin=b"x-1\nx-2\n",
        )
    finally:
        os.close(fd)
    assert result.code == 2
    assert "bulkretry: error:" in result.stderr and "in use" in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == b""
    assert emulator.stats.requests == []
    assert path.read_bytes() == b""


@pytest.mark.parametrize(
    ("where", "extra"),
    [("dir", []), ("missing/j", []), ("dir", ["--dry-run"])],
)
def test_an_unusable_journal_path_is_a_usage_error(emulator, thread_server, tmp_path, where, extra):
    """A journal that is a directory or lies in a missing one: exit 2, one line, nothing sent."""
    (tmp_path / "dir").mkdir()
    path = tmp_path / where
    result = run_cli(
        ["retry", "--journal", str(path), "--rate", "0", *extra],
        env=cli_env(thread_server),
        stdin=b"x-1\n",
    )
    assert result.code == 2
    assert f"journal {path}" in result.stderr
    assert "Traceback" not in result.stderr
    assert emulator.stats.requests == []


# Intent before send


async def test_intent_is_on_disk_while_the_request_is_in_flight(emulator, api_settings, tmp_path):
    """The intent is in the file before any answer arrives; a timeout then records uncertain."""
    path = tmp_path / "j"
    emulator.faults = Faults(script={"slow-1": ["timeout_after"]})
    seen_in_flight: dict[str, Record] = {}
    settings = JobSettings(rate=0, journal=path, timeout=0.5)
    async with bulkretry.retrigger(["slow-1"], api_settings, settings, backoff=FAST) as job:
        await poll(lambda: emulator.stats.requests)
        seen_in_flight = read_journal(path)  # the server holds the answer: still in flight
        [outcome] = [outcome async for outcome in job]
    assert seen_in_flight == {"slow-1": Record("intent")}
    assert isinstance(outcome, Uncertain) and outcome.status is None
    assert read_journal(path)["slow-1"].state == "uncertain"
    assert emulator.stats.retriggers == {"slow-1": 1}


async def test_every_attempt_writes_an_intent_and_every_outcome_is_recorded(
    emulator, api_settings, tmp_path
):
    """A retried run has an intent per attempt, a safe failure between them, then its outcome."""
    path = tmp_path / "j"
    emulator.faults = Faults(script={"t-1": ["unavailable", "unavailable", "ok"]})
    settings = JobSettings(rate=0, journal=path)
    async with bulkretry.retrigger(["t-1"], api_settings, settings, backoff=FAST) as job:
        [outcome] = [outcome async for outcome in job]
    assert isinstance(outcome, Retriggered)
    states = [(line["state"], line.get("status")) for line in journal_lines(path)]
    assert states == [
        ("intent", None),
        ("failed", 503),
        ("intent", None),
        ("failed", 503),
        ("intent", None),
        ("retriggered", None),
    ]
    assert journal_lines(path)[-1]["new_run_id"] == outcome.new_run_id
    assert journal_lines(path)[-1]["etag"] == outcome.etag


# Resume rules


async def test_resume_through_the_api_follows_the_contract(emulator, api_settings, tmp_path):
    """Recorded retriggered → already-retriggered, intent/uncertain → uncertain, failed → sent."""
    path = tmp_path / "j"
    seed_journal(path)
    settings = JobSettings(rate=0, journal=path)
    ids = ["done-1", "lost-1", "maybe-1", "fail-1", "fresh-1"]
    async with bulkretry.retrigger(ids, api_settings, settings, backoff=FAST) as job:
        outcomes = {outcome.run_id: outcome async for outcome in job}
    assert outcomes["done-1"] == Skipped(
        run_id="done-1", reason="already-retriggered", new_run_id="new-of-done-1", etag='"etag-1"'
    )
    assert isinstance(outcomes["lost-1"], Uncertain) and outcomes["lost-1"].attempts == 0
    assert "intent" in outcomes["lost-1"].error
    assert outcomes["maybe-1"] == Uncertain(
        run_id="maybe-1", status=500, error="FLOW-1000-500: An unexpected error", attempts=0
    )
    assert isinstance(outcomes["fail-1"], Retriggered)
    assert isinstance(outcomes["fresh-1"], Retriggered)
    assert sorted(r.run_id for r in emulator.stats.requests) == ["fail-1", "fresh-1"]


def test_cli_resume_skips_reports_uncertain_and_retries_failed(emulator, thread_server, tmp_path):
    """Via the CLI: the contract's resume table, exit 1 while anything is uncertain."""
    path = tmp_path / "j"
    seed_journal(path)
    result = run_cli(
        ["retry", "--journal", str(path), "--rate", "0"],
        env=cli_env(thread_server),
        stdin=RESUME_IDS,
    )
    assert result.code == 1, result.stderr
    by_id = {line["run_id"]: line for line in result.lines[:-1]}
    assert len(by_id) == 5 == result.summary["total"]
    done = by_id["done-1"]
    assert (done["event"], done["reason"]) == ("skipped", "already-retriggered")
    assert (done["new_run_id"], done["etag"]) == ("new-of-done-1", '"etag-1"')
    assert by_id["lost-1"]["event"] == "uncertain" and by_id["lost-1"]["status"] is None
    assert by_id["maybe-1"]["event"] == "uncertain" and by_id["maybe-1"]["status"] == 500
    assert by_id["fail-1"]["event"] == "retriggered"
    assert by_id["fresh-1"]["event"] == "retriggered"
    assert sorted(r.run_id for r in emulator.stats.requests) == ["fail-1", "fresh-1"]
    records = read_journal(path)
    assert records["fail-1"].new_run_id == by_id["fail-1"]["new_run_id"]
    assert records["lost-1"] == Record("intent")  # resuming as uncertain writes nothing


def test_cli_resume_with_retry_uncertain_resends_only_the_uncertain(
    emulator, thread_server, tmp_path
):
    """--retry-uncertain sends intent-only and uncertain IDs again, never recorded successes."""
    path = tmp_path / "j"
    seed_journal(path)
    env = cli_env(thread_server)
    args = ["retry", "--journal", str(path), "--rate", "0"]
    first = run_cli(args, env=env, stdin=RESUME_IDS)
    assert first.code == 1
    emulator.stats.reset()
    second = run_cli([*args, "--retry-uncertain"], env=env, stdin=RESUME_IDS)
    assert second.code == 0, second.stderr
    events = {line["run_id"]: (line["event"], line.get("reason")) for line in second.lines[:-1]}
    assert events == {
        "done-1": ("skipped", "already-retriggered"),
        "lost-1": ("retriggered", None),
        "maybe-1": ("retriggered", None),
        "fail-1": ("skipped", "already-retriggered"),
        "fresh-1": ("skipped", "already-retriggered"),
    }
    assert sorted(r.run_id for r in emulator.stats.requests) == ["lost-1", "maybe-1"]
    emulator.stats.reset()
    third = run_cli(args, env=env, stdin=RESUME_IDS)
    assert third.code == 0
    assert {line["reason"] for line in third.events("skipped")} == {"already-retriggered"}
    assert third.summary["skipped"] == 5
    assert emulator.stats.requests == []


def test_cli_resume_after_a_torn_tail(emulator, thread_server, tmp_path):
    """A journal torn by hand resumes: the torn ID is sent, and the next record is on a new line."""
    path = tmp_path / "j"
    path.write_bytes(
        b'{"run_id":"t-1","state":"intent"}\n'
        b'{"run_id":"t-1","state":"retriggered","new_run_id":"n-1","etag":"\\"e-1\\""}\n'
        b'{"run_id":"t-2","state":"int'
    )
    result = run_cli(
        ["retry", "--journal", str(path), "--rate", "0"],
        env=cli_env(thread_server),
        stdin=b"t-1\nt-2\n",
    )
    assert result.code == 0, result.stderr
    by_id = {line["run_id"]: line for line in result.lines[:-1]}
    assert by_id["t-1"]["reason"] == "already-retriggered" and by_id["t-1"]["etag"] == '"e-1"'
    assert by_id["t-2"]["event"] == "retriggered"
    assert [r.run_id for r in emulator.stats.requests] == ["t-2"]
    lines = path.read_bytes().splitlines()
    assert lines[2] == b'{"run_id":"t-2","state":"int'
    assert [orjson.loads(line)["state"] for line in lines[3:]] == ["intent", "retriggered"]
    assert read_journal(path)["t-2"].new_run_id == by_id["t-2"]["new_run_id"]


def test_a_journal_that_cannot_be_written_stops_the_job_and_reports_everything(
    emulator, thread_server, tmp_path
):
    """A full disk (a file-size limit): sending stops, every ID read has a line, exit 1."""
    journal = tmp_path / "full.journal"
    done = run_forked(
        ["retry", "--journal", str(journal), "--rate", "0"],
        input=b"".join(b"full-%d\n" % n for n in range(20)),
        env=cli_env(thread_server),
        file_size_limit=300,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "cannot write journal" in stderr and "Traceback" not in stderr
    lines = parse_lines(done.stdout)
    assert lines[-1]["total"] == 20 == len(lines) - 1
    sent = {r.run_id for r in emulator.stats.requests}
    assert 0 < len(sent) < 20
    # every request that left had its intent on disk first
    assert sent <= set(read_journal(journal))


# Odd files and big journals (issue 14, items 7, 8 and 10)


def test_dry_run_refuses_a_fifo_journal_without_blocking(tmp_path):
    """--dry-run --journal FIFO: one line, exit 2, at once (opening a FIFO must not wait)."""
    fifo = tmp_path / "pipe.journal"
    os.mkfifo(fifo)
    done = run_cli(["retry", "--dry-run", "--journal", str(fifo)], env=cli_env(), timeout=20)
    assert done.code == 2 and "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


def test_resuming_on_a_full_disk_with_a_torn_tail_is_one_line(emulator, thread_server, tmp_path):
    """The torn tail cannot be closed (disk full): exit 2 with a message, nothing sent."""
    journal = tmp_path / "torn.journal"
    journal.write_bytes(b'{"run_id":"t-1","state":"intent"}\n{"run_id":"t-2","sta')
    done = run_forked(
        ["retry", "--journal", str(journal)],
        input=b"t-3\n",
        env=cli_env(thread_server),
        file_size_limit=journal.stat().st_size,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "cannot write journal" in stderr and "Traceback" not in stderr
    assert emulator.stats.requests == []


def big_journal(path, count):
    """A journal of ``count`` re-triggered run IDs, written fast."""
    record = b'{"run_id":"big-%d","state":"intent"}\n'
    done = b'{"run_id":"big-%d","state":"retriggered","new_run_id":"new-%d","etag":"e"}\n'
    with path.open("wb") as out:
        for start in range(0, count, 50_000):
            out.write(b"".join(record % n + done % (n, n) for n in range(start, start + 50_000)))


def peak_memory(work):
    """Peak bytes allocated while ``work()`` runs, and its result."""
    tracemalloc.start()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_resume_index_memory_stays_near_the_dedup_sets(tmp_path):
    """100k run IDs cost fingerprints and offsets: within 3x the job's own dedup set."""
    path = tmp_path / "big.journal"
    big_journal(path, 100_000)

    def dedup():
        seen = SeenIds()
        for n in range(100_000):
            seen.add(f"big-{n}")
        return seen

    dedup_peak, _ = peak_memory(dedup)
    peak, index = peak_memory(lambda: JournalIndex.load(path))
    try:
        assert len(index) == 100_000
        assert index.get("big-99999") == Record("retriggered", new_run_id="new-99999", etag="e")
        assert index.get("big-100000") is None
    finally:
        index.close()
    assert peak < 3 * dedup_peak


@pytest.mark.slow
def test_sigterm_while_a_big_journal_loads_stops_at_once(emulator, thread_server, tmp_path):
    """Loading happens in a thread: SIGTERM ends the start-up promptly, nothing sent."""
    path = tmp_path / "huge.journal"
    big_journal(path, 600_000)
    job = spawn_cli(["retry", "--journal", str(path)], env=cli_env(thread_server))
    job.stdin.write(b"fresh-1\n")
    job.stdin.close()
    time.sleep(0.6)  # interpreter start-up; loading takes seconds
    started = time.monotonic()
    job.send_signal(signal.SIGTERM)
    stdout, stderr = job.stdout.read(), job.stderr.read()
    job.wait(10)
    assert time.monotonic() - started < 3
    assert job.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr
    assert emulator.stats.requests == []
    assert parse_lines(stdout)[-1]["event"] == "summary"
