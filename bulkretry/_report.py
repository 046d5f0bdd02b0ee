"""JSON lines out: structlog configured once per job, rendered by orjson, one line per run.

The logger is built with ``wrap_logger`` rather than global configuration, so a library
user's own structlog setup is left alone, and two jobs in one process do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, BinaryIO, Final

import anyio
import anyio.to_thread
import orjson
import structlog
from structlog.typing import EventDict, WrappedLogger

from ._errors import OutputError
from ._outcomes import Outcome, Summary, Tally, outcome_fields
from ._text import REDACTED

_REDACTED_BYTES: Final = REDACTED.encode()
_MIN_SECRET: Final = 8
"""Shorter values are not real secrets, and scrubbing them would mangle every line."""
BATCH: Final = 256
"""Lines after which the job stops to write them out (``Report.drain``)."""
_HARD_LIMIT: Final = 4 * BATCH


def _head(_: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Add ``timestamp`` (ISO 8601, UTC) and ``level``, and put the three common fields first.

    One processor instead of TimeStamper plus a reorder: this runs once per run ID.
    """
    return {
        "event": event_dict.pop("event"),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
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
        for secret in self._secrets():
            if len(secret) >= _MIN_SECRET:
                escaped = orjson.dumps(secret)[1:-1]  # the secret as it appears inside JSON
                if escaped in line:
                    line = line.replace(escaped, _REDACTED_BYTES)
        return line


class _Lines:
    """A structlog logger that collects rendered lines and writes them in batches.

    structlog's ``BytesLogger`` flushes every line: one syscall per run ID. Here lines
    wait in a batch; ``Report.drain`` writes it from a thread (a slow reader of stdout then
    holds back the job, never the event loop), and ``flush`` writes it in place.
    """

    __slots__ = ("_out", "_pending")

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending: list[bytes] = []

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
        if block:
            try:
                view = memoryview(block)
                while view:  # an unbuffered file may take a block in several writes
                    view = view[self._out.write(view) or len(view) :]
                self._out.flush()
            except BrokenPipeError:
                raise  # the reader left: the CLI says so in its own words
            except OSError as exc:
                raise OutputError(f"cannot write the JSON lines: {exc.strerror}") from exc


class Report:
    """Writes outcome lines and the summary; counts what it wrote."""

    def __init__(self, out: BinaryIO, secrets: Callable[[], Iterable[str]] = tuple) -> None:
        self.tally = Tally()
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

    def outcome(self, outcome: Outcome) -> None:
        """One final line for one run ID."""
        self.tally.add(outcome)
        self._methods[outcome.level](outcome.event, **outcome_fields(outcome))

    @property
    def backlog(self) -> bool:
        """Whether a batch is due: the caller should ``await drain()``."""
        return self._lines.backlog >= BATCH

    async def drain(self) -> None:
        """Write the lines rendered so far from a thread, one batch at a time, in order."""
        block = self._lines.take()
        if block:
            self._writing = self._writing or anyio.Lock()  # FIFO: blocks stay in order
            async with self._writing:
                await anyio.to_thread.run_sync(self._lines.write, block)

    def flush(self) -> None:
        """Write the lines rendered so far, here and now (end of job, exiting at once)."""
        self._lines.write(self._lines.take())

    def summary(self, elapsed_s: float) -> Summary:
        """The last line: counts over everything written."""
        summary = self.tally.summary(elapsed_s)
        fields = {name: getattr(summary, name) for name in summary.__slots__}
        self._log.info(summary.event, **fields)
        self.flush()
        return summary

    async def finish(self, elapsed_s: float) -> Summary:
        """The summary, after every batch still being written from a thread is out."""
        await self.drain()
        self._writing = self._writing or anyio.Lock()
        async with self._writing:
            return self.summary(elapsed_s)
