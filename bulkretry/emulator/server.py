"""Serve an emulator on a loopback port, from async code or beside sync code in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiohttp import web

from bulkretry.emulator.flowservice import BASE_PATH
from bulkretry.emulator.ims import IMS_PATH

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from bulkretry.emulator.app import Emulator

#: In-flight handlers get this long to finish at shutdown; hangs are woken first.
_SHUTDOWN_TIMEOUT: Final = 2.0
_START_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class Server:
    """Where a running emulator listens."""

    base_url: str
    ims_url: str
    port: int


@contextlib.asynccontextmanager
async def serve(emu: Emulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
    """Listen until the block exits; port 0 picks a free port, so tests never collide."""
    runner = web.AppRunner(
        emu.make_app(), access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = int(runner.addresses[0][1])
        root = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
        yield Server(base_url=root + BASE_PATH, ims_url=root + IMS_PATH, port=bound)
    finally:
        emu.wake()
        await runner.cleanup()


@contextlib.contextmanager
def serve_in_thread(emu: Emulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[Server]:
    """Serve from a daemon thread with its own loop, for sync tests driving a subprocess."""
    started: queue.Queue[tuple[asyncio.AbstractEventLoop, asyncio.Event, Server] | BaseException]
    started = queue.Queue()

    async def main() -> None:
        stop = asyncio.Event()
        try:
            async with serve(emu, host, port) as server:
                started.put((asyncio.get_running_loop(), stop, server))
                await stop.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            started.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="emulator", daemon=True)
    thread.start()
    outcome = started.get(timeout=_START_TIMEOUT)
    if isinstance(outcome, BaseException):
        thread.join()
        raise outcome
    loop, stop, server = outcome
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
