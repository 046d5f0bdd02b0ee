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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Self

import anyio
import anyio.to_thread
import orjson

from ._dedup import Fingerprints
from ._errors import JournalError, JournalLockedError, UsageError
from ._outcomes import Failed, Retriggered, Uncertain

State = Literal["intent", "retriggered", "failed", "uncertain"]

_log = logging.getLogger(__name__)

SYNC_INTERVAL: Final = 1.0
MAX_RECORD: Final = 64 * 1024
_READ_BUFFER: Final = 1 << 20
_STATES: Final = frozenset({"intent", "retriggered", "failed", "uncertain"})


@dataclass(frozen=True, slots=True)
class Record:
    """The last thing the journal says about one run ID."""

    state: State
    new_run_id: str | None = None
    etag: str | None = None
    status: int | None = None
    error: str | None = None


class JournalIndex:
    """The last record per run ID, kept as fingerprints and file offsets, not as records.

    Resuming from a journal of millions of lines costs about as much memory as the job's
    dedup set: each run ID is 24 bytes in a ``Fingerprints`` table pointing at the line of
    its last record, which is reread (one ``pread``) only when that run ID comes up again.
    """

    def __init__(self, fd: int = -1, table: Fingerprints | None = None) -> None:
        self._fd = fd
        self._table = table or Fingerprints()
        self._live = 0

    def __len__(self) -> int:
        """Run IDs whose last record is not ``failed``."""
        return self._live

    def close(self) -> None:
        """Release the journal's read descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def get(self, run_id: str) -> Record | None:
        """The last record of ``run_id``, or None (never seen, or last recorded ``failed``)."""
        offset = self._table.get(run_id)
        if offset is None or offset < 0 or self._fd < 0:
            return None
        entry = _decode(_line_at(self._fd, offset))
        return entry[1] if entry is not None and entry[0] == run_id else None

    @classmethod
    def load(cls, path: Path, stop: threading.Event | None = None) -> JournalIndex:
        """Index ``path`` (run it in a thread: a big journal takes seconds); ``stop`` aborts.

        A missing journal is an empty index. Anything but a regular file is refused without
        blocking (a FIFO would otherwise wait for a writer forever).
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise UsageError(f"cannot read journal {path}: {exc.strerror}") from None
        index = cls(fd)
        try:
            index._read(path, stop or threading.Event())
        except BaseException:
            index.close()
            raise
        return index

    def _read(self, path: Path, stop: threading.Event) -> None:
        """One pass, about a microsecond or two a line: only run ID and state are looked at."""
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            raise UsageError(f"journal {path} is not a regular file")
        put, loads, offset, live = self._table.put, orjson.loads, 0, 0
        with os.fdopen(os.dup(self._fd), "rb", buffering=_READ_BUFFER) as lines:
            for count, line in enumerate(lines):
                if not count & 0xFFFF and stop.is_set():
                    raise Stopped
                try:
                    data = loads(line)
                except orjson.JSONDecodeError:  # a torn tail, or garbage: skipped
                    offset += len(line)
                    continue
                if type(data) is dict:
                    run_id, state = data.get("run_id"), data.get("state")
                    if type(run_id) is str and type(state) is str and state in _STATES:
                        keep = state != "failed"  # a failure is tried again, like a new ID
                        before = put(run_id, offset if keep else -1)
                        live += keep - (before is not None and before >= 0)
                offset += len(line)
        self._live = live


class Stopped(Exception):  # noqa: N818 - a signal, not a failure
    """Loading the journal was stopped (the job got SIGINT/SIGTERM during start-up)."""


def _line_at(fd: int, offset: int) -> bytes:
    """The line starting at ``offset`` (records are short; a longer one is not a record)."""
    return os.pread(fd, MAX_RECORD, offset).split(b"\n", 1)[0]


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
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
            fd = os.open(self.path, flags, 0o600)
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
        try:
            self._repair_tail()
        except BaseException:
            self.__exit__()
            raise
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
            try:
                written = os.write(self._fd, b"\n")
            except OSError as exc:  # a full disk: nothing has been sent yet, so exit 2
                raise UsageError(f"cannot write journal {self.path}: {exc.strerror}") from None
            if written != 1:
                raise UsageError(f"cannot write journal {self.path}: the disk is full")

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
