"""Files and stdin → run IDs or ``skipped`` outcomes, as a stream.

Input is read in chunks by a daemon thread, so the first request can leave while
a pipe is still open, a 10 GB file never sits in memory, and a stop never waits
on a terminal that nobody is typing into.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Final, Self

import anyio
import anyio.from_thread
import anyio.lowlevel
import orjson

from ._errors import UsageError
from ._outcomes import Skipped
from ._text import EXCERPT, excerpt

MAX_LINE: Final = 64 * 1024
"""Bytes a line may have; longer ones are skipped as invalid without being buffered."""

_CHUNK: Final = 64 * 1024
_RUN_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_RULE: Final = "a run ID is 1-128 characters of A-Z a-z 0-9 - _"


def parse_line(raw: bytes) -> str | Skipped | None:
    """One input line → a run ID, a ``skipped``/``invalid`` outcome, or None for blank/comment."""
    try:
        text = raw.decode("utf-8").strip().lstrip("\ufeff")  # a BOM is not part of an ID
    except UnicodeDecodeError:
        return _invalid(raw.decode("utf-8", "backslashreplace").strip(), "not valid UTF-8")
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        return _from_json(text)
    return check_run_id(text)


def check_run_id(value: str) -> str | Skipped:
    """Accept a run ID that is safe to put in a URL path, or say why not."""
    if _RUN_ID.fullmatch(value):
        return value
    return _invalid(value, _RULE)


def _from_json(text: str) -> str | Skipped:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _invalid(text, "not valid JSON")
    value = obj.get("run_id", obj.get("id")) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        return _invalid(text, "JSON line without a string run_id or id")
    checked = check_run_id(value)
    flow_id = obj.get("flow_id")
    if isinstance(checked, str) and isinstance(flow_id, str) and flow_id:
        return FlowRunId(checked, flow_id[:256])
    return checked


class FlowRunId(str):  # noqa: SLOT000 - a str subclass cannot have non-empty __slots__
    """A run ID from a JSON line that named its flow (``bulkretry failed``): the history keeps it.

    A ``str`` everywhere a run ID goes; only the ledger looks at ``flow_id``.
    """

    flow_id: str

    def __new__(cls, run_id: str, flow_id: str) -> Self:
        made = super().__new__(cls, run_id)
        made.flow_id = flow_id
        return made


def _invalid(text: str, detail: str) -> Skipped:
    return Skipped(run_id=excerpt(text), reason="invalid", detail=detail)


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than ``MAX_LINE``: only its head was kept."""

    head: bytes


class LineSplitter:
    """Incremental line splitter that never buffers more than ``MAX_LINE`` bytes."""

    __slots__ = ("_buffer", "_overlong")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overlong = False

    def feed(self, chunk: bytes) -> Iterator[bytes | Overlong]:
        """The lines that ``chunk`` completes, without their newline."""
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self._buffer or self._overlong:
                yield self._finish(chunk[start:end])
            else:
                yield chunk[start:end]  # the common case: the whole line sits in one chunk
            start = end + 1
        self._append(chunk[start:])

    def close(self) -> Iterator[bytes | Overlong]:
        """The last line, when the input did not end with a newline."""
        if self._buffer or self._overlong:
            yield self._finish(b"")

    def _append(self, piece: bytes) -> None:
        if not self._overlong:
            self._buffer += piece
            if len(self._buffer) > MAX_LINE:
                del self._buffer[MAX_LINE:]
                self._overlong = True

    def _finish(self, tail: bytes) -> bytes | Overlong:
        self._append(tail)
        line: bytes | Overlong = (
            Overlong(bytes(self._buffer[: EXCERPT * 4])) if self._overlong else bytes(self._buffer)
        )
        self._buffer.clear()
        self._overlong = False
        return line


def parse_lines(lines: Iterator[bytes | Overlong]) -> Iterator[str | Skipped]:
    """Parse split lines, dropping blanks and comments."""
    for line in lines:
        if isinstance(line, Overlong):
            text = line.head.decode("utf-8", "replace")
            yield _invalid(text + "...", f"line longer than {MAX_LINE} bytes")
        elif (item := parse_line(line)) is not None:
            yield item


@dataclass(frozen=True, slots=True)
class _Opened:
    name: str
    fd: int


class InputFiles:
    """Opens every named input up front, so an unreadable file fails before any request."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = list(paths) or ["-"]
        self._stack = ExitStack()
        self._opened: list[_Opened] = []

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            for path in self._paths:
                self._opened.append(_Opened(path, self._open(path, stack)))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @staticmethod
    def _open(path: str, stack: ExitStack) -> int:
        if path == "-":
            return 0
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        stack.callback(os.close, fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise UsageError(f"cannot read {path}: it is a directory")
        return fd

    async def items(self) -> AsyncIterator[str | Skipped]:
        """Every line of every input, parsed, in order; blank lines and comments dropped."""
        for opened in self._opened:
            splitter = LineSplitter()
            async for chunk in _read_chunks(opened.fd):
                for item in parse_lines(splitter.feed(chunk)):
                    yield item
            for item in parse_lines(splitter.close()):
                yield item


async def _read_chunks(fd: int) -> AsyncIterator[bytes]:
    """Chunks of ``fd`` read by a daemon thread; a blocked read never holds up exit."""
    send, receive = anyio.create_memory_object_stream[bytes | OSError](max_buffer_size=4)
    token = anyio.lowlevel.current_token()

    def pump() -> None:
        try:
            try:
                while chunk := os.read(fd, _CHUNK):
                    anyio.from_thread.run(send.send, chunk, token=token)
            except OSError as exc:
                anyio.from_thread.run(send.send, exc, token=token)
            anyio.from_thread.run(send.aclose, token=token)
        except Exception:  # noqa: BLE001 - the job ended or stopped reading while we were blocked
            return

    threading.Thread(target=pump, name=f"bulkretry-read-{fd}", daemon=True).start()
    async with receive:
        async for chunk in receive:
            if isinstance(chunk, OSError):
                raise UsageError(f"input read error: {chunk.strerror}") from chunk
            yield chunk
