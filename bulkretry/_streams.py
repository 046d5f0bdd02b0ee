"""Moving items through the job without losing one: the source, and the bounded stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterable
from typing import TypeVar

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from ._outcomes import Skipped

T = TypeVar("T")


async def send_without_loss(stream: MemoryObjectSendStream[T], item: T) -> None:
    """Send without a checkpoint when there is room; wait under a shield when there is not.

    The shield is what makes a stop lossless: an item already read is always delivered.
    """
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        with anyio.CancelScope(shield=True):
            await stream.send(item)


async def _aiter(
    items: AsyncIterable[str | Skipped] | Iterable[str | Skipped],
) -> AsyncGenerator[str | Skipped, None]:
    if isinstance(items, AsyncIterable):
        iterator = aiter(items)
        try:
            async for item in iterator:
                yield item
        finally:  # close the source now (its reader thread, its streams), not at GC time
            if isinstance(iterator, AsyncGenerator):
                with anyio.CancelScope(shield=True):
                    await iterator.aclose()
    else:
        for item in items:
            yield item
            await anyio.lowlevel.checkpoint()
