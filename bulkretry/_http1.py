"""A small HTTP/1.1 client for the one hot call: the re-trigger POST.

aiohttp's general client spends more CPU per request than everything else bulkretry does
per run together (about 90 µs on the project's 2-core machine). The re-trigger needs
little of that generality: one origin, one method, no request body, no redirects, cookies
or proxies. So it goes out over keep-alive connections of its own, on asyncio's transports
(TLS included, verified as aiohttp verifies), and the answer is parsed here: a status line,
headers, then a body sized by Content-Length, chunked, or read to the close, inflated when
gzip or deflate, and never read past the cap. Listing pages, run polls and IMS tokens,
a few per job, stay on aiohttp.

Errors keep the contract's split, as ``_flowservice._transport_error`` does for aiohttp:
failing to connect sent nothing (``ConnectError``); anything after the request went out
may have been applied (``ConnectionLostError``, ``AnswerTooLargeError``).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from typing import TYPE_CHECKING, Final, cast

from . import __version__
from ._errors import AnswerTooLargeError, ConnectError, ConnectionLostError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import yarl

_HEAD_CAP: Final = 64 * 1024
"""Bytes of status line and headers read at most: a gateway's are well under 8 KiB."""
_KEEPALIVE: Final = 15.0
"""An idle connection is not reused after this long (aiohttp's default): the server may be
about to close it, and a request sent into a closing connection would be left uncertain."""
_NO_BODY: Final = frozenset({204, 304})


class _Closed(Exception):  # noqa: N818 - a signal between the protocol and the reader
    """The server closed the connection."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: bytes in a buffer, a waiter woken when more arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.connection_lost(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        del exc
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes; ``_Closed`` when the server has closed the connection."""
        if self.closed:
            raise _Closed
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        """Close for good (the next request opens a fresh connection)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1:
    """Keep-alive connections to one origin; ``post`` sends a body-less POST and reads the answer.

    ``timeout`` bounds a whole request and ``connect`` the opening of a connection, which
    ends strictly before it (a connect that times out is ``ConnectError``: nothing sent).
    """

    def __init__(self, base: yarl.URL, *, timeout: float, connect: float) -> None:
        self._host = base.raw_host or ""
        self._port = base.port or (443 if base.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if base.scheme == "https" else None
        self._timeout, self._connect = timeout, connect
        self._fixed = (
            f"Host: {base.host_port_subcomponent}\r\nUser-Agent: bulkretry/{__version__}\r\n"
            "Accept-Encoding: gzip, deflate\r\nContent-Length: 0\r\n\r\n"
        ).encode("latin-1")
        self._headers: tuple[Mapping[str, str] | None, bytes] = (None, b"")
        self._idle: list[_Connection] = []

    async def post(
        self, target: str, headers: Mapping[str, str], cap: int
    ) -> tuple[int, bytes, dict[str, str]]:
        """POST ``target`` (path and query, encoded); status, body and lower-cased headers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        connection = self._reuse(loop) or await self._open(loop)
        assert connection.transport is not None
        try:
            async with asyncio.timeout_at(deadline):
                connection.transport.write(
                    b"POST " + target.encode("ascii") + b" HTTP/1.1\r\n" + self._block(headers)
                )
                status, answer_headers, body, keep = await _read_answer(connection, cap)
        except BaseException as exc:  # lost, late, too large, cancelled: the state is unknown
            connection.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionLostError("timed out waiting for the answer") from None
            if isinstance(exc, _Closed):
                raise ConnectionLostError("connection lost after sending: it closed") from None
            raise
        if keep and not connection.closed and not connection.buffer:
            connection.idle_since = loop.time()
            self._idle.append(connection)
        else:
            connection.close()
        return status, body, answer_headers

    def close(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        while self._idle:
            self._idle.pop().close()

    def _block(self, headers: Mapping[str, str]) -> bytes:
        """The header lines, built once per headers mapping (that is, once per token)."""
        if self._headers[0] is not headers:
            if any("\r" in text or "\n" in text for pair in headers.items() for text in pair):
                raise ValueError("a header name or value holds a line break")
            lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            self._headers = (headers, lines.encode("latin-1") + self._fixed)
        return self._headers[1]

    def _reuse(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        """The most recently used live idle connection, if one is young enough."""
        now = loop.time()
        while self._idle:
            connection = self._idle.pop()
            fresh = now - connection.idle_since < _KEEPALIVE
            if fresh and not connection.closed and not connection.buffer:
                return connection
            connection.close()
        return None

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        connection = _Connection(loop)
        try:
            async with asyncio.timeout(self._connect):
                await loop.create_connection(
                    lambda: connection,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except (OSError, TimeoutError) as exc:
            connection.close()
            raise ConnectError(f"cannot connect: {exc.__class__.__name__}: {exc}") from exc
        return connection


async def _read_answer(
    connection: _Connection, cap: int
) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body, and whether the connection may carry another request."""
    while True:  # 1xx interim answers come before the real one
        version, status, headers = await _read_head(connection)
        if not 100 <= status < 200:
            break
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    sink = _Sink(cap, headers.get("content-encoding", ""))
    length = headers.get("content-length")
    if status in _NO_BODY:
        pass
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        await _read_chunked(connection, sink)
    elif length is not None:
        if not length.isdigit():
            raise ConnectionLostError(f"answer with a malformed Content-Length: {length[:20]!r}")
        await _read_exact(connection, int(length), sink)
    else:  # no length: the body runs to the close
        keep = False
        while True:
            sink.feed(bytes(connection.buffer))
            connection.buffer.clear()
            try:
                await connection.more()
            except _Closed:
                break
    return status, headers, sink.finish(), keep


async def _read_head(connection: _Connection) -> tuple[str, int, dict[str, str]]:
    buffer = connection.buffer
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > _HEAD_CAP:
            raise ConnectionLostError("answer headers over the cap: stopped reading them")
        await connection.more()
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    del buffer[: end + 4]
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ConnectionLostError(f"not an HTTP/1.1 answer: {lines[0][:40]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ConnectionLostError("answer with a malformed header line")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), headers


async def _read_exact(connection: _Connection, size: int, sink: _Sink) -> None:
    buffer = connection.buffer
    while size:
        if not buffer:
            await connection.more()
            continue
        chunk = bytes(buffer[:size])
        del buffer[: len(chunk)]
        size -= len(chunk)
        sink.feed(chunk)


async def _read_line(connection: _Connection) -> bytes:
    buffer = connection.buffer
    while (end := buffer.find(b"\r\n")) < 0:
        if len(buffer) > _HEAD_CAP:
            raise ConnectionLostError("answer with an over-long chunk line")
        await connection.more()
    line = bytes(buffer[:end])
    del buffer[: end + 2]
    return line


async def _read_chunked(connection: _Connection, sink: _Sink) -> None:
    while True:
        size_text = (await _read_line(connection)).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ConnectionLostError("answer with a malformed chunk size") from None
        if size == 0:
            while await _read_line(connection):  # trailers, up to the empty line
                pass
            return
        await _read_exact(connection, size, sink)
        if await _read_line(connection):
            raise ConnectionLostError("answer with a malformed chunk end")


class _Sink:
    """The body as it arrives: inflated in bounded steps, and stopped past ``cap`` bytes."""

    def __init__(self, cap: int, encoding: str) -> None:
        self._cap = cap
        self._size = 0
        self._parts: list[bytes] = []
        encoding = encoding.strip().lower()
        self._inflater = None
        if encoding in {"gzip", "x-gzip"}:
            self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS)  # zlib-wrapped, as RFC 9110 says
        elif encoding not in {"", "identity"}:
            raise ConnectionLostError(f"answer in an encoding not asked for: {encoding[:20]!r}")

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the body."""
        inflater = self._inflater
        if inflater is None:
            self._add(data)
            return
        try:
            while data:
                self._add(inflater.decompress(data, self._cap + 1 - self._size))
                data = inflater.unconsumed_tail
        except zlib.error as exc:
            raise ConnectionLostError(f"answer could not be inflated: {exc}") from None

    def finish(self) -> bytes:
        """The whole body."""
        if self._inflater is not None:
            self._add(self._inflater.flush())
        return b"".join(self._parts)

    def _add(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            raise AnswerTooLargeError(
                f"answer over the {self._cap // 1024} KiB cap: stopped reading it"
            )
        self._parts.append(data)
