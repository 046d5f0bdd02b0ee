"""Answers in the three error dialects Adobe speaks, and the non-answer of a dropped connection.

Gateway refusals are ``{"error_code", "message"}``; Flow Service refusals carry a
``FLOW-<code>-<status>`` type URI and their message in ``errorMessage``; a few generic
Platform refusals are RFC 7807 with ``detail``. Codes follow Adobe's published catalogs.
"""

from __future__ import annotations

import asyncio
import uuid
import zlib
from typing import Any, Final

import orjson
from aiohttp import web

_ERRORS = "https://ns.adobe.com/aep/errors/"
_PIECE: Final = b" " * 65536
#: Titles from Adobe's "Sources error messages" catalog, keyed by status.
_TITLES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Resource not found",
    500: "Internal Error",
    503: "Service Unavailable",
}


class Dropped(web.Response):
    """Marks a connection closed without an answer, so the stats can count it under 0."""


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:  # noqa: ANN401 - any JSON value
    """Serialise with orjson, as every Adobe endpoint answers JSON."""
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def service_error(code: str, status: int, message: str) -> web.Response:
    """Refuse as Flow Service itself does: ``FLOW-<code>-<status>`` and no ``detail`` field.

    The shape is the one Adobe's access-label tutorial quotes: the message sits in
    ``report.detailed-message``, ``errorMessage`` and ``errorDetails``.
    """
    body = {
        "type": f"{_ERRORS}{code}-{status}",
        "title": _TITLES[status],
        "status": status,
        "report": {"detailed-message": message, "request-id": str(uuid.uuid4())},
        "errorMessage": message,
        "errorDetails": message,
    }
    return json_reply(body, status)


def platform_error(status: int, title: str, detail: str) -> web.Response:
    """Refuse in the generic RFC 7807 dialect the troubleshooting guide quotes."""
    body = {"type": "/placeholder/type/uri", "status": status, "title": title, "detail": detail}
    return json_reply(body, status)


def gateway_error(
    code: str, status: int, message: str, retry_after: int | None = None
) -> web.Response:
    """Answer as Adobe I/O's gateway refuses, before the service is reached."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return json_reply({"error_code": code, "message": message}, status, headers)


def throttled(retry_after: int | None) -> web.Response:
    """Refuse as the gateway's rate limit does; the request never reached the service."""
    return gateway_error("429050", 429, "Too many requests", retry_after)


def garbled() -> web.Response:
    """Answer 200 as a broken proxy might: the client cannot tell whether it worked."""
    return web.Response(body=b"<html>upstream ok</html>", content_type="text/html")


def echoed(authorization: str) -> web.Response:
    """Answer 200 as a chatty proxy might, quoting the credentials back.

    The token starts at character 72, so a client cutting the text at 80 before masking it
    would show the token's first eight characters.
    """
    head = "<html><body>upstream ok; request headers follow".ljust(49, ".")
    text = f"{head} Authorization: {authorization}</body></html>"
    return web.Response(text=text, content_type="text/html")


def odd_id(fault: str, new_run_id: str, authorization: str) -> web.Response:
    """A 2xx naming the new run oddly: the token as its id or etag, or an id no run has."""
    token = authorization.partition(" ")[2]
    if fault == "echo_id":
        return json_reply({"id": token, "etag": '"1"'})
    if fault == "echo_etag":
        return json_reply({"id": new_run_id, "etag": f'"{token}"'})
    return json_reply({"id": f"{new_run_id}\n{'x' * 130}", "etag": '"1"'})  # bad_id


def drop(request: web.BaseRequest) -> Dropped:
    """Close the socket with no response: the client sees a server disconnect.

    After ``close()`` aiohttp's attempt to write the returned response meets a closing
    transport, raises ``ConnectionResetError`` and swallows it silently, so nothing is
    logged and the client reads EOF where the status line should be.
    """
    if request.transport is not None:
        request.transport.close()
    return Dropped(status=499)


async def oversized(
    request: web.BaseRequest, size: int | None, *, bomb: bool = False, pause: float = 0.0
) -> web.StreamResponse:
    """A 200 that never seems to end: ``size`` bytes (``None``: until the client leaves).

    ``bomb`` sends it gzip-compressed, made on the fly: a few kilobytes on the wire for
    every megabyte the client inflates. Blank JSON whitespace, so only its size is wrong.
    ``pause`` trickles it instead, one byte per ``pause`` seconds: never too big, never done.
    """
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    packer = zlib.compressobj(9, zlib.DEFLATED, 31) if bomb else None  # 31: gzip framing
    if packer is not None:
        response.headers["Content-Encoding"] = "gzip"
    if size is None or packer is not None:
        response.enable_chunked_encoding()
    else:
        response.content_length = size
    await response.prepare(request)
    sent = 0
    try:
        while size is None or sent < size:
            piece = _PIECE if size is None else _PIECE[: size - sent]
            if pause:
                piece = piece[:1]
                await asyncio.sleep(pause)
            sent += len(piece)
            await response.write(piece if packer is None else packer.compress(piece))
        if packer is not None:
            await response.write(packer.flush())
        await response.write_eof()
    except ConnectionError:  # the client stopped reading and left: that was the point
        pass
    return response
