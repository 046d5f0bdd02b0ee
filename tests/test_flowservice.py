"""The Flow Service client against servers that are not our emulator."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from aiohttp import web

import bulkretry
from bulkretry import ApiSettings, Failed, JobSettings, Retriggered, Secret
from bulkretry.flowservice import resolve
from bulkretry.retrying import Backoff

pytestmark = pytest.mark.anyio


@contextmanager
def refusing_to_accept() -> Iterator[int]:
    """A loopback port whose backlog is full: connects hang, as with a dropped SYN."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)  # noqa: FBT003 - the socket API
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in (*fillers, server):
            sock.close()


def settings_for(base_url: str) -> ApiSettings:
    """Static-token settings aimed at ``base_url``."""
    return ApiSettings(
        base_url=base_url, api_key="k", org_id="o", sandbox="prod", credentials=Secret("t" * 12)
    )


async def test_a_base_url_without_a_path_gets_runs_below_the_root():
    """`--base-url http://host:port` (no path) posts to /runs/{id}/action, never //runs."""
    paths = []

    async def retrigger(request: web.Request) -> web.Response:
        paths.append(request.path_qs)
        return web.json_response({"id": "new-1", "etag": '"e"'})

    app = web.Application()
    app.router.add_post("/runs/{run_id}/action", retrigger)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for base in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/"):
            async with bulkretry.retrigger(["r1"], settings_for(base), JobSettings(rate=0)) as job:
                [outcome] = [o async for o in job]
            assert isinstance(outcome, Retriggered)
    finally:
        await runner.cleanup()
    assert paths == ["/runs/r1/action?op=re-trigger"] * 2


async def test_a_connect_timeout_is_retried_as_not_applied():
    """A connect that times out (even with a short --timeout) is safe: retried, then failed."""
    with refusing_to_accept() as port:
        settings = JobSettings(rate=0, timeout=0.5, max_attempts=2)
        base = f"http://127.0.0.1:{port}/fs"
        async with bulkretry.retrigger(
            ["r1"], settings_for(base), settings, backoff=Backoff(base=0)
        ) as job:
            [outcome] = [o async for o in job]
    assert isinstance(outcome, Failed), outcome
    assert outcome.attempts == 2
    assert "cannot connect" in outcome.error


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("/runs?continuationToken=a", "https://h.example/fs/runs?continuationToken=a"),
        ("runs?continuationToken=a", "https://h.example/fs/runs?continuationToken=a"),
        ("/fs/runs?continuationToken=a", "https://h.example/fs/runs?continuationToken=a"),
        ("?continuationToken=a", "https://h.example/fs/runs?continuationToken=a"),
        ("https://h.example/fs/runs?c=1", "https://h.example/fs/runs?c=1"),
    ],
)
def test_next_links_resolve_below_the_base_in_every_documented_shape(href, expected):
    """Relative, base-prefixed, query-only and absolute next links all reach /runs."""
    assert resolve("https://h.example/fs", href) == expected


def test_next_links_to_another_host_are_refused():
    """A next link to another origin would carry our token there: it is an error instead."""
    with pytest.raises(bulkretry.BulkRetryError, match="another host"):
        resolve("https://h.example/fs", "https://evil.example/fs/runs?c=1")
