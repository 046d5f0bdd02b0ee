"""The Flow Service client against servers that are not our emulator."""

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import pytest
from aiohttp import web

import bulkretry
from bulkretry import ApiSettings, Failed, JobSettings, Retriggered, Secret
from bulkretry._attempts import Backoff
from bulkretry._flowservice import resolve

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


@asynccontextmanager
async def stand_in(answer: Callable[[str], web.Response]) -> AsyncIterator[tuple[int, list[str]]]:
    """A minimal Flow Service at the root of a loopback port; yields (port, paths seen)."""
    paths: list[str] = []

    async def retrigger(request: web.Request) -> web.Response:
        paths.append(request.path_qs)
        return answer(request.match_info["run_id"])

    app = web.Application()
    app.router.add_post("/runs/{run_id}/action", retrigger)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1], paths
    finally:
        await runner.cleanup()


def accept(_: str) -> web.Response:
    """Every run is re-triggered."""
    return web.json_response({"id": "new-1", "etag": '"e"'})


async def test_a_base_url_without_a_path_gets_runs_below_the_root():
    """`--base-url http://host:port` (no path) posts to /runs/{id}/action, never //runs."""
    async with stand_in(accept) as (port, paths):
        for base in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/"):
            async with bulkretry.retrigger(["r1"], settings_for(base), JobSettings(rate=0)) as job:
                [outcome] = [o async for o in job]
            assert isinstance(outcome, Retriggered)
    assert paths == ["/runs/r1/action?op=re-trigger"] * 2


def forbid_some(run_id: str) -> web.Response:
    """A service 403 for runs named no-*, as for a run the caller may not touch."""
    if run_id.startswith("no-"):
        body = {"type": "https://ns.adobe.com/aep/errors/FLOW-1106-403", "title": "Forbidden"}
        return web.json_response(body, status=403)
    return accept(run_id)


async def test_a_403_about_single_runs_never_stops_the_job():
    """Service 403s for a few runs fail those runs only; every other run is still sent."""
    ids = ["no-1", "no-2", "no-3", "no-4", "ok-1", "ok-2"]
    async with stand_in(forbid_some) as (port, paths):
        settings = JobSettings(rate=0, concurrency=1)
        async with bulkretry.retrigger(
            ids, settings_for(f"http://127.0.0.1:{port}"), settings
        ) as job:
            outcomes = {o.run_id: o async for o in job}
    assert len(paths) == 6
    assert all(isinstance(outcomes[f"no-{n}"], Failed) for n in range(1, 5))
    assert isinstance(outcomes["ok-1"], Retriggered) and isinstance(outcomes["ok-2"], Retriggered)


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
