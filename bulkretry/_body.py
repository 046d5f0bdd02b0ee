"""Answers read with a ceiling, so a hostile or broken server cannot exhaust our memory.

aiohttp (3.13.3 and later) inflates a compressed body in bounded steps as it is read, so
counting the bytes handed to us counts the decompressed size: a gzip bomb stops at the cap
just as a huge or an endless body does. The session's total timeout covers the reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._errors import AnswerTooLargeError

if TYPE_CHECKING:
    import aiohttp

ANSWER_CAP: Final = 256 * 1024
"""Bytes read of a re-trigger or token answer: they are a few hundred bytes."""
PAGE_CAP: Final = 8 * 1024 * 1024
"""Bytes read of a listing page: 100 runs, with room for verbose run objects."""


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The whole body, or ``AnswerTooLargeError`` as soon as it passes ``cap`` bytes."""
    content = response.content
    if content.is_eof() and "Content-Encoding" not in response.headers:
        # The whole plain body came with the headers (the usual small answer): take it as
        # is. What a stream holds is bounded by its flow control, and checked all the same.
        body = content.read_nowait()
        if len(body) > cap:
            raise _too_large(cap)
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > cap:
            raise _too_large(cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(cap: int) -> AnswerTooLargeError:
    return AnswerTooLargeError(f"answer over the {cap // 1024} KiB cap: stopped reading it")
