"""JSON lines out: structlog configured once per job, rendered by orjson, one line per run.

The logger is built with ``wrap_logger`` rather than global configuration, so a library
user's own structlog setup is left alone, and two jobs in one process do not collide.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any, BinaryIO, Final

import anyio
import anyio.to_thread
import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

from ._errors import OutputError
from ._outcomes import Line, Summary, Tally, outcome_fields
from ._text import REDACTED

_REDACTED_BYTES: Final = REDACTED.encode()
_MIN_SECRET: Final = 8
"""Shorter values are not real secrets, and scrubbing them would mangle every line."""
BATCH: Final = 256
"""Lines after which the job stops to write them out (``Report.drain``)."""
_HARD_LIMIT: Final = 4 * BATCH
_ABANDON_WAIT: Final = 0.5
"""Seconds a second signal waits for a piece being written (a stopped reader: not at all)."""


class _Clock:
    """ISO 8601 UTC timestamps with microseconds, the date and time worked out once a second."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = (-1, "")  # (second, its date and time): one value, so threads agree

    def now(self) -> str:
        t = time.time()
        second = int(t)
        last_second, prefix = self._last
        if second != last_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._last = (second, prefix)
        return f"{prefix}.{int((t - second) * 1e6):06d}Z"


_CLOCK: Final = _Clock()


def _head(_: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Add ``timestamp`` (ISO 8601, UTC) and ``level``, and put the three common fields first.

    One processor instead of TimeStamper plus a reorder: this runs once per run ID.
    """
    return {
        "event": event_dict.pop("event"),
        "timestamp": _CLOCK.now(),
        "level": method,
        **event_dict,
    }


class Redactor:
    """A last guard: replace any known secret found in a string value."""

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        self._secrets = secrets

    def watch(self, secrets: Callable[[], Iterable[str]]) -> None:
        """Scrub these secrets too (a job's tokens become known only once it starts)."""
        before = self._secrets
        self._secrets = lambda: (*before(), *secrets())

    def rendered(self, _: WrappedLogger, __: str, line: Any) -> Any:  # noqa: ANN401
        """Scrub a rendered JSON line: one substring search per secret, at C speed.

        Typed ``Any`` because structlog types every processor as dict to dict, while the
        one after the renderer receives and returns bytes.
        """
        for escaped in _escaped(tuple(self._secrets())):
            if escaped in line:
                line = line.replace(escaped, _REDACTED_BYTES)
        return line


@lru_cache(maxsize=8)
def _escaped(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    """The secrets long enough to be real, as they appear inside JSON: once per set, not line."""
    return tuple(orjson.dumps(s)[1:-1] for s in secrets if len(s) >= _MIN_SECRET)


class _Lines:
    """A structlog logger that collects rendered lines and writes them whole.

    structlog's ``BytesLogger`` flushes every line: one syscall per run ID. Here lines
    wait in a batch; ``Report.drain`` writes it from a thread (a slow reader of stdout then
    holds back the job, never the event loop), and ``flush`` writes it in place.

    Whole lines only: into a pipe, a batch goes in line-aligned pieces of at most
    ``PIPE_BUF`` bytes, each written atomically, so the reader never sees half a line even
    when the process exits mid-batch; into a regular file, a write cut short by a full disk
    is cut back to its last whole line.
    """

    __slots__ = ("_gate", "_out", "_pending", "_piece")

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending: list[bytes] = []
        self._gate = threading.Lock()  # one piece at a time; kept for good by ``abandon``
        self._piece = 0 if _is_regular(out) else select.PIPE_BUF

    def msg(self, message: bytes) -> None:
        self._pending.append(message)
        if len(self._pending) >= _HARD_LIMIT:  # nobody drains: stay bounded all the same
            self.write(self.take())

    info = warning = error = msg

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def take(self) -> bytes:
        """The pending lines as one block, and an empty batch."""
        if not self._pending:
            return b""
        self._pending.append(b"")
        block = b"\n".join(self._pending)
        self._pending.clear()
        return block

    def write(self, block: bytes) -> None:
        """Write ``block`` (whole lines) or raise ``OutputError`` having written whole lines."""
        for piece in _pieces(block, self._piece):
            with self._gate:
                self._write_piece(piece)
        if block:
            try:
                self._out.flush()
            except OSError as exc:
                raise OutputError(f"cannot write the JSON lines: {exc.strerror}") from exc

    def _write_piece(self, piece: memoryview) -> None:
        done = 0
        try:
            while done < len(piece):  # an unbuffered file may take a piece in several writes
                done += self._out.write(piece[done:]) or len(piece) - done
        except BrokenPipeError:
            raise  # the reader left: the CLI says so in its own words
        except OSError as exc:
            self._cut_back(piece[:done])
            raise OutputError(f"cannot write the JSON lines: {exc.strerror}") from exc

    def _cut_back(self, written: memoryview) -> None:
        """Remove the torn tail of a piece only partly written (a full disk), if any."""
        torn = len(written) - (bytes(written).rfind(b"\n") + 1)
        if torn and _is_regular(self._out):
            fd = self._out.fileno()
            with contextlib.suppress(OSError):  # cutting back frees space: it rarely fails
                end = os.lseek(fd, 0, os.SEEK_CUR) - torn
                os.ftruncate(fd, end)
                os.lseek(fd, end, os.SEEK_SET)

    def abandon(self, wait: float) -> None:
        """Let a piece being written finish (up to ``wait`` seconds) and start no other.

        For exiting at once: whatever was written is whole lines; the rest is dropped.
        """
        self._gate.acquire(timeout=wait)


def write_lines(out: BinaryIO, block: bytes) -> None:
    """Write whole lines to ``out`` now, or raise ``OutputError`` having written whole lines."""
    _Lines(out).write(block)


def _is_regular(out: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(out.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):  # an in-memory buffer, say
        return False


def _pieces(block: bytes, size: int) -> Iterator[memoryview]:
    """``block`` in line-aligned pieces of at most ``size`` bytes (a longer line alone).

    ``size`` 0 means one piece. ``block`` ends with a newline.
    """
    view, start = memoryview(block), 0
    while start < len(block):
        end = len(block) if not size or len(block) - start <= size else start + size
        if end < len(block):
            cut = block.rfind(b"\n", start, end) + 1
            end = cut if cut > start else block.index(b"\n", start) + 1
        yield view[start:end]
        start = end


class Report:
    """Writes outcome lines and the summary; counts what it wrote.

    ``followed``: the job follows its new runs (``--wait``), so the summary has their counts.
    """

    def __init__(
        self,
        out: BinaryIO,
        secrets: Callable[[], Iterable[str]] = tuple,
        *,
        followed: bool = False,
    ) -> None:
        self.tally = Tally()
        self.followed = followed
        self.redactor = Redactor(secrets)
        self._lines = _Lines(out)
        self._writing: anyio.Lock | None = None  # made in the event loop, on first use
        self._log = structlog.wrap_logger(
            self._lines,
            processors=[
                _head,
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
                self.redactor.rendered,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(0),
            cache_logger_on_first_use=True,
        )
        self._methods = {
            "info": self._log.info,
            "warning": self._log.warning,
            "error": self._log.error,
        }

    def outcome(self, outcome: Line) -> None:
        """One final line for one run ID, or a ``finished`` line."""
        self.tally.add(outcome)
        self._methods[outcome.level](outcome.event, **outcome_fields(outcome))

    @property
    def backlog(self) -> bool:
        """Whether a batch is due: the caller should ``await drain()``."""
        return self._lines.backlog >= BATCH

    async def drain(self) -> None:
        """Write the lines rendered so far from a thread, one batch at a time, in order.

        Shielded: a batch taken is written even when the caller is being cancelled (a
        stopped job cancels the producer's waits), or its lines would be lost.
        """
        block = self._lines.take()
        if block:
            self._writing = self._writing or anyio.Lock()  # FIFO: blocks stay in order
            with anyio.CancelScope(shield=True):
                async with self._writing:
                    await anyio.to_thread.run_sync(self._lines.write, block)

    def flush(self) -> None:
        """Write the lines rendered so far, here and now (end of job, exiting at once)."""
        self._lines.write(self._lines.take())

    def abandon(self) -> None:
        """Exiting at once: finish the piece being written, start no other, drop the rest."""
        self._lines.abandon(_ABANDON_WAIT)

    def summary(self, elapsed_s: float) -> Summary:
        """The last line, written here and now: counts over everything written."""
        summary = self._render_summary(elapsed_s)
        self.flush()
        return summary

    async def finish(self, elapsed_s: float) -> Summary:
        """The summary, written from a thread after every batch before it."""
        summary = self._render_summary(elapsed_s)
        await self.drain()
        return summary

    def _render_summary(self, elapsed_s: float) -> Summary:
        summary = self.tally.summary(elapsed_s, followed=self.followed)
        self._log.info(summary.event, **summary.fields())
        return summary
