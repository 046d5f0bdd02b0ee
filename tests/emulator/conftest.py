"""Shared fixtures: an emulator with a few runs, served on loopback, and a client session."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import pytest

from bulkretry.emulator import Emulator, Server, serve

from .support import sample_runs

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
def anyio_backend() -> str:
    """Pin asyncio: the emulator is aiohttp, which is asyncio-only."""
    return "asyncio"


@pytest.fixture
def emu() -> Emulator:
    """Give each test a fresh emulator, so counters start at zero."""
    emulator = Emulator()
    for run in sample_runs():
        emulator.add_run(run)
    return emulator


@pytest.fixture
async def server(emu: Emulator) -> AsyncIterator[Server]:
    """Serve the test's emulator on a free loopback port."""
    async with serve(emu) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """Open a real aiohttp client, closed after the test."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        yield client
