"""The re-trigger's own HTTP/1.1 client against raw servers that answer byte for byte."""

import asyncio
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
import trustme
import yarl

from bulkretry._auth import StaticToken
from bulkretry._errors import AnswerTooLargeError, APIError, ConnectError, ConnectionLostError
from bulkretry._flowservice import FlowService
from bulkretry._http1 import Http1
from bulkretry.emulator import Faults

from .test_flowservice import refusing_to_accept

pytestmark = pytest.mark.anyio

HEADERS = {"Authorization": "Bearer t", "x-api-key": "k"}
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[tuple[Http1, list[bytes]]]:
    """A loopback server calling ``answer`` per request; yields a client and the heads seen."""
    heads: list[bytes] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(b"CONNECT")
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                heads.append(head)
                await answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Http1(yarl.URL(f"http://127.0.0.1:{port}/fs"), timeout=2.0, connect=1.0)
    try:
        yield client, heads
    finally:
        client.close()
        server.close()
        await server.wait_closed()


def replying(*chunks: bytes) -> Answer:
    """An answer written as these byte strings, in order."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()

    return answer


OK = b'{"id":"new-1"}'
PLAIN = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK), OK)


async def test_a_post_is_sent_with_its_headers_over_one_kept_alive_connection():
    """Two requests, one connection; the request line and every header are as aiohttp sends."""
    async with raw_server(replying(PLAIN)) as (client, heads):
        for _ in range(2):
            assert await client.post("/fs/runs/r1/action?op=re-trigger", HEADERS, 1024) == (
                200,
                OK,
                {"content-length": "14"},
            )
    assert heads.count(b"CONNECT") == 1
    lines = heads[1].decode().split("\r\n")
    assert lines[0] == "POST /fs/runs/r1/action?op=re-trigger HTTP/1.1"
    assert {"Authorization: Bearer t", "x-api-key: k", "Content-Length: 0"} <= set(lines)
    assert f"Host: 127.0.0.1:{client._port}" in lines  # noqa: SLF001 - the port it dialled


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\n" + OK[:5] + b"\r\n9\r\n" + OK[5:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + PLAIN,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
        % (len(gzip.compress(OK)), gzip.compress(OK)),
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s"
        % (len(zlib.compress(OK)), zlib.compress(OK)),
    ],
    ids=["chunked", "interim-100", "gzip", "deflate"],
)
async def test_every_body_framing_reads_the_same_answer(raw):
    """Chunked (with extensions and trailers), after a 100, gzip or deflate: the same body."""
    async with raw_server(replying(raw[:20], raw[20:])) as (client, _):
        status, body, _ = await client.post("/fs/x", HEADERS, 1024)
    assert (status, body) == (200, OK)


async def test_a_body_to_the_close_is_read_and_the_connection_not_reused():
    """No length: the body runs to the close, and the next request dials again."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + OK)
        await writer.drain()
        writer.close()

    async with raw_server(answer) as (client, heads):
        for _ in range(2):
            assert (await client.post("/fs/x", HEADERS, 1024))[1] == OK
    assert heads.count(b"CONNECT") == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    """A keep-alive connection closed by the server between requests: a fresh one, no error."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(PLAIN)
        await writer.drain()
        writer.close()  # without saying Connection: close

    async with raw_server(answer) as (client, heads):
        await client.post("/fs/x", HEADERS, 1024)
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert (await client.post("/fs/x", HEADERS, 1024))[1] == OK
    assert heads.count(b"CONNECT") == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"400\r\n" + b"x" * 1024 + b"\r\n" + b"400\r\n" + b"x" * 1024 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(b"\0" * 10**6),
    ],
    ids=["long", "chunked", "gzip-bomb"],
)
async def test_an_answer_over_the_cap_stops_being_read(raw):
    """Whatever the framing, more than ``cap`` bytes (inflated) is AnswerTooLargeError."""
    async with raw_server(replying(raw)) as (client, _):
        with pytest.raises(AnswerTooLargeError):
            await client.post("/fs/x", HEADERS, 1024)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "it closed"),
        (b"SPDY/3 200 OK\r\n\r\n", "not an HTTP/1.1 answer"),
        (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\n\r\n", "encoding not asked for"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", "it closed"),
    ],
)
async def test_a_broken_answer_after_sending_may_have_been_applied(raw, words):
    """A dropped, cut or malformed answer is ConnectionLostError: the POST may have landed."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        writer.close()

    async with raw_server(answer) as (client, _):
        with pytest.raises(ConnectionLostError, match=words):
            await client.post("/fs/x", HEADERS, 1024)


async def test_no_answer_in_time_is_a_lost_answer():
    """A server that never answers: after the timeout, ConnectionLostError (maybe applied)."""

    async def answer(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(answer) as (client, _):
        client._timeout = 0.2  # noqa: SLF001 - a short wait for the test
        with pytest.raises(ConnectionLostError, match="timed out"):
            await client.post("/fs/x", HEADERS, 1024)


async def test_failing_to_connect_sent_nothing():
    """Refused, or a connect that hangs past its deadline: ConnectError (safe to resend)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = Http1(yarl.URL(f"http://127.0.0.1:{port}"), timeout=1.0, connect=0.5)
    with pytest.raises(ConnectError, match="cannot connect"):
        await client.post("/x", HEADERS, 1024)
    with refusing_to_accept() as port:
        client = Http1(yarl.URL(f"http://127.0.0.1:{port}"), timeout=1.0, connect=0.2)
        with pytest.raises(ConnectError, match="TimeoutError"):
            await client.post("/x", HEADERS, 1024)


async def test_a_header_value_with_a_line_break_is_refused():
    """A line break in a header value (header injection) is refused before anything is sent."""
    async with raw_server(replying(PLAIN)) as (client, heads):
        with pytest.raises(ValueError, match="line break"):
            await client.post("/fs/x", {"x-api-key": "k\r\nX-Evil: 1"}, 1024)
    assert b"X-Evil" not in b"".join(heads)


async def test_a_429s_retry_after_reaches_the_error_through_lower_cased_headers(
    emulator, api_settings
):
    """Over the emulator's rate, the re-trigger's 429 carries Retry-After into the APIError."""
    emulator.faults = Faults(max_rate=1)
    async with aiohttp.ClientSession() as session:
        client = FlowService(session, api_settings, StaticToken(api_settings.credentials))
        try:
            await client.retrigger("first")
            with pytest.raises(APIError) as refused:
                await client.retrigger("second")
        finally:
            client.close()
    assert (refused.value.status, refused.value.retry_after) == (429, 1.0)


@asynccontextmanager
async def tls_server(ca: trustme.CA) -> AsyncIterator[tuple[int, list[bytes]]]:
    """The plain answer over TLS, with a certificate for 127.0.0.1 from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    heads: list[bytes] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(b"CONNECT")
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                heads.append(head)
                writer.write(PLAIN)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()
        await server.wait_closed()


async def test_https_is_verified_against_the_system_trust_store(tmp_path, monkeypatch):
    """HTTPS: a trusted certificate serves kept-alive POSTs; an untrusted one gets nothing.

    An unverified server is ConnectError (nothing was sent, safe to retry).
    """
    ca = trustme.CA()
    async with tls_server(ca) as (port, heads):
        base = yarl.URL(f"https://127.0.0.1:{port}/fs")
        untrusted = Http1(base, timeout=2.0, connect=1.0)
        with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.post("/fs/x", HEADERS, 1024)
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # read by the default
        trusted = Http1(base, timeout=2.0, connect=1.0)
        try:
            for _ in range(2):
                assert await trusted.post("/fs/x", HEADERS, 1024) == (
                    200,
                    OK,
                    {"content-length": "14"},
                )
        finally:
            trusted.close()
    assert heads.count(b"CONNECT") == 1  # the refused handshake never got this far
    assert len(heads) == 3  # then both POSTs over one kept-alive connection
    assert heads[-1].startswith(b"POST /fs/x HTTP/1.1\r\n")
