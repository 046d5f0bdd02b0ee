import io
import re
import sys
import threading
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from bulkretry._outcomes import Failed, Retriggered, Skipped
from bulkretry._report import BATCH, REDACTED, Report, _Clock

pytestmark = pytest.mark.anyio


def lines(buffer: io.BytesIO):
    """The JSON lines written so far."""
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def test_lines_have_the_common_fields_first_and_exact_contents():
    """Each outcome renders as event, timestamp, level, then its own fields, and nothing else."""
    out = io.BytesIO()
    report = Report(out)
    report.outcome(
        Retriggered(run_id="old-1", new_run_id="new-1", etag='"etag-1"', attempts=2, status=200)
    )
    report.outcome(Skipped(run_id="dup-1", reason="duplicate"))
    report.summary(1.23456)
    first, second, summary = lines(out)
    assert list(first)[:3] == ["event", "timestamp", "level"]
    assert first | {"timestamp": None} == {
        "event": "retriggered",
        "timestamp": None,
        "level": "info",
        "run_id": "old-1",
        "new_run_id": "new-1",
        "etag": '"etag-1"',
        "attempts": 2,
        "status": 200,
    }
    assert first["timestamp"].endswith("Z")
    assert second | {"timestamp": None} == {
        "event": "skipped",
        "timestamp": None,
        "level": "warning",
        "run_id": "dup-1",
        "reason": "duplicate",
    }
    assert summary | {"timestamp": None} == {
        "event": "summary",
        "timestamp": None,
        "level": "info",
        "total": 2,
        "retriggered": 1,
        "failed": 0,
        "uncertain": 0,
        "skipped": 1,
        "planned": 0,
        "elapsed_s": 1.235,
    }


def test_output_is_written_in_bounded_batches():
    """Lines wait in a batch that asks to be drained at BATCH and never grows past 4 x BATCH."""
    out = io.BytesIO()
    report = Report(out)
    for n in range(BATCH - 1):
        report.outcome(Skipped(run_id=f"r{n}", reason="duplicate"))
    assert not report.backlog
    report.outcome(Skipped(run_id="due", reason="duplicate"))
    assert report.backlog
    for n in range(BATCH * 4):
        report.outcome(Skipped(run_id=f"s{n}", reason="duplicate"))
        assert len(report._lines._pending) < BATCH * 4  # noqa: SLF001 - the bound is the point
    assert len(lines(out)) == BATCH * 4
    report.flush()
    assert len(lines(out)) == BATCH * 5


async def test_drained_batches_keep_their_order_and_the_summary_comes_last():
    """Batches written from threads arrive in order, and finish() writes the summary last."""
    out = io.BytesIO()
    report = Report(out)
    for n in range(BATCH * 2 + 7):
        report.outcome(Skipped(run_id=f"r{n}", reason="duplicate"))
        if report.backlog:
            await report.drain()
    summary = await report.finish(0.5)
    written = lines(out)
    assert [line["run_id"] for line in written[:-1]] == [f"r{n}" for n in range(BATCH * 2 + 7)]
    assert written[-1]["event"] == "summary" and summary.total == BATCH * 2 + 7


def test_known_secrets_are_scrubbed_from_every_field():
    """A secret that reaches an error message is replaced before it is written."""
    out = io.BytesIO()
    report = Report(out, secrets=lambda: ["s3cr3t-token"])
    report.outcome(Failed(run_id="r1", status=401, error="bad token s3cr3t-token here", attempts=1))
    report.flush()
    [line] = lines(out)
    assert line["error"] == f"bad token {REDACTED} here"
    assert b"s3cr3t-token" not in out.getvalue()


def test_timestamps_are_iso_8601_utc_to_the_microsecond():
    """The clock's timestamp reads back as the moment it was made, six digits, in UTC."""
    clock = _Clock()
    for _ in range(3):
        before = datetime.now(UTC)
        stamp = clock.now()
        after = datetime.now(UTC)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
        made = datetime.fromisoformat(stamp)
        slack = timedelta(microseconds=2)  # float seconds round the last digit
        assert before - slack <= made <= after + slack


def test_the_clock_works_the_date_out_again_in_a_new_second():
    """A second kept from before is never reused for a later time."""
    clock = _Clock()
    clock.now()
    second, _ = clock._last  # noqa: SLF001
    clock._last = (second - 1, "1999-01-01T00:00:00")  # as if made a second ago  # noqa: SLF001
    assert not clock.now().startswith("1999")


def test_threads_sharing_a_clock_never_get_a_torn_timestamp():
    """The second and its date are read as one value: no thread pairs one with another's."""
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    made: list[str] = []
    try:
        for _ in range(1000):
            clock, start = _Clock(), threading.Barrier(3)

            def stamp(clock: _Clock = clock, start: threading.Barrier = start) -> None:
                start.wait()  # all three at once, on a clock that has no second yet
                made.extend(clock.now() for _ in range(3))

            threads = [threading.Thread(target=stamp) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(switching)
    shape = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
    assert [stamp for stamp in made if not shape.fullmatch(stamp)] == []
