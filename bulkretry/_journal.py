"""The journal: an append-only JSON-lines record of intents and outcomes, for resume.

Each record is one ``os.write`` on an ``O_APPEND`` descriptor, so it reaches the OS
before the request leaves and survives ``kill -9``; ``fsync`` runs in groups (about
once a second and at close) so durability against power loss costs little
throughput. A torn last line, from a crash mid-write, is ignored on reading.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Self

import anyio
import anyio.to_thread
import orjson

from ._errors import JournalError, JournalLockedError, UsageError
from ._outcomes import Failed, Retriggered, Uncertain

State = Literal["intent", "retriggered", "failed", "uncertain"]

_log = logging.getLogger(__name__)

SYNC_INTERVAL: Final = 1.0
_STATES: Final = frozenset({"intent", "retriggered", "failed", "uncertain"})


@dataclass(frozen=True, slots=True)
class Record:
    """The last thing the journal says about one run ID."""

    state: State
    new_run_id: str | None = None
    etag: str | None = None
    status: int | None = None
    error: str | None = None


def read_journal(path: Path) -> dict[str, Record]:
    """Last record per run ID; unparseable lines (a torn tail) are skipped."""
    records: dict[str, Record] = {}
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return records
    except OSError as exc:
        raise UsageError(f"cannot read journal {path}: {exc.strerror}") from None
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise UsageError(f"journal {path} is not a regular file")
        for line in handle:
            entry = _decode(line)
            if entry is None:
                continue
            run_id, record = entry
            if record.state == "failed":
                records.pop(run_id, None)  # tried again on resume, like an ID never seen
            else:
                records[run_id] = record
    return records


def _decode(line: bytes) -> tuple[str, Record] | None:
    """One line → its record, or None for anything but a well-formed record (never raises)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    run_id, state = data.get("run_id"), data.get("state")
    if not isinstance(run_id, str) or not isinstance(state, str) or state not in _STATES:
        return None
    return run_id, Record(
        state=state,  # type: ignore[arg-type]  # checked against _STATES just above
        new_run_id=_text(data.get("new_run_id")),
        etag=_text(data.get("etag")),
        status=_status(data.get("status")),
        error=_text(data.get("error")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _status(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Journal:
    """Writer side: holds an exclusive lock for the job's lifetime."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._dirty = False

    def __enter__(self) -> Self:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open journal {self.path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UsageError(f"journal {self.path} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLockedError(
                f"journal {self.path} is in use by another bulkretry process; "
                "wait for it to finish or use another journal"
            ) from None
        self._fd = fd
        self._repair_tail()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd >= 0:
            try:
                _sync(self._fd)
            finally:
                os.close(self._fd)  # closing releases the lock
                self._fd = -1

    def _repair_tail(self) -> None:
        """End a torn last line with a newline, so the next record starts clean."""
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")

    def intent(self, run_id: str) -> None:
        """Record that a request for ``run_id`` is about to leave."""
        self._write({"run_id": run_id, "state": "intent"})

    def outcome(self, outcome: Retriggered | Failed | Uncertain) -> None:
        """Record the final word on ``run_id`` (or a safe failure before the next attempt)."""
        entry: dict[str, Any] = {"run_id": outcome.run_id, "state": outcome.event}
        if isinstance(outcome, Retriggered):
            entry |= {"new_run_id": outcome.new_run_id, "etag": outcome.etag}
        else:
            entry |= {"status": outcome.status, "error": outcome.error}
        self._write(entry)

    def _write(self, entry: dict[str, Any]) -> None:
        data = orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE)
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            raise JournalError(f"cannot write journal {self.path}: {exc.strerror}") from exc
        if written != len(data):  # a torn record is no record: the disk is full
            raise JournalError(f"cannot write journal {self.path}: only part of a record fit")
        self._dirty = True

    async def sync_forever(self, interval: float = SYNC_INTERVAL) -> None:
        """Flush written records to disk in groups (fsync); run as a background task."""
        while True:
            await anyio.sleep(interval)
            if self._dirty and self._fd >= 0:
                self._dirty = False
                await anyio.to_thread.run_sync(_sync, self._fd)


def _sync(fd: int) -> None:
    """fsync, where the file supports it; a failure is logged, never fatal to the job.

    Every record already reached the OS with its own write: a failed fsync only weakens
    durability against power loss, which is no reason to abandon requests in flight.
    """
    try:
        os.fsync(fd)
    except OSError as exc:
        _log.warning("journal fsync failed: %s", exc.strerror)
