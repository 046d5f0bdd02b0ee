"""The Flow Service client against servers that are not our emulator."""

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

import bulkretry
from bulkretry import ApiSettings, Failed, JobSettings, Retriggered, Secret
from bulkretry._backoff import Backoff
from bulkretry._flowservice import _connect_timeout

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


Refusal = Callable[[str], Awaitable[web.Response | None]]


def settings_for(base_url: str) -> ApiSettings:
    """Static-token settings aimed at ``base_url``."""
    return ApiSettings(
        base_url=base_url, api_key="k", org_id="o", sandbox="prod", credentials=Secret("t" * 12)
    )


@asynccontextmanager
async def stand_in(
    answer: Callable[[str], web.Response],
    *,
    op_refused: Callable[[str], web.Response] | None = None,
) -> AsyncIterator[tuple[int, list[str]]]:
    """A minimal Flow Service at the root of a loopback port; yields (port, paths seen).

    ``op_refused(op)`` answers instead of ``answer`` when it returns a response.
    """
    paths: list[str] = []

    async def retrigger(request: web.Request) -> web.Response:
        paths.append(request.path_qs)
        refusal = await op_refused(request.query["op"]) if op_refused is not None else None
        return refusal or answer(request.match_info["run_id"])

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
        settings = JobSettings(rate=0, timeout=0.2, max_attempts=2)
        base = f"http://127.0.0.1:{port}/fs"
        async with bulkretry.retrigger(
            ["r1"], settings_for(base), settings, backoff=Backoff(base=0)
        ) as job:
            [outcome] = [o async for o in job]
    assert isinstance(outcome, Failed), outcome
    assert outcome.attempts == 2
    assert "cannot connect" in outcome.error


@given(st.floats(min_value=0.001, max_value=3600))
def test_the_connect_deadline_ends_well_before_the_requests(timeout):
    """Half the --timeout or 1 s before it, whichever is earlier, and never over 10 s."""
    connect = _connect_timeout(timeout)
    assert connect <= timeout - min(timeout / 2, 1.0) + 1e-9  # a margin for a late loop
    assert connect >= min(timeout / 2, 10.0) - 1e-9
    assert connect <= 10.0


#: Stoplight Prism 5.16's answer to op=re-trigger on Adobe's flow-service.yaml, verbatim.
PRISM_422 = {
    "type": "https://stoplight.io/prism/errors#UNPROCESSABLE_ENTITY",
    "title": "Invalid request",
    "status": 422,
    "detail": "Your request is not valid and no HTTP validation response was found in the "
    "spec, so Prism is generating this error for you.",
    "validation": [
        {
            "location": ["query", "op"],
            "severity": "Error",
            "code": "enum",
            "message": "Request query parameter op must be equal to one of the allowed values: "
            "RE_TRIGGER",
        }
    ],
}


def prism_refusal(allowed: set[str], until: float = 0.0) -> Refusal:
    """Refuse the ops not in ``allowed`` as Prism's request validation does.

    Refusals are held until the monotonic time ``until``, so that they arrive together.
    """

    async def refuse(op: str) -> web.Response | None:
        if op in allowed:
            return None
        await asyncio.sleep(until - time.monotonic())
        return web.json_response(PRISM_422, status=422, content_type="application/problem+json")

    return refuse


def spec_answer(_: str) -> web.Response:
    """The OpenAPI file's answer: a whole run (FlowRunItemDTO), its etag key spelled eTag."""
    return web.json_response({"id": "new-2", "eTag": '"spec-e"', "flowId": "f", "metrics": {}})


@contextmanager
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Let caplog see the bulkretry logger's records even if a CLI run stopped propagation."""
    del caplog  # requested so that its handler is in place
    logger = logging.getLogger("bulkretry")
    propagate, logger.propagate = logger.propagate, True
    try:
        yield
    finally:
        logger.propagate = propagate


async def test_an_op_refusal_switches_every_worker_to_the_spec_spelling_once(caplog):
    """A 422 naming op moves the job to RE_TRIGGER: each run resent once, at most N refused."""
    ids = [f"r{n}" for n in range(12)]
    with logged(caplog):
        await retrigger_against_prism_dialect(ids)
    switches = [r for r in caplog.records if "op=re-trigger" in r.getMessage()]
    assert len(switches) == 1 and switches[0].levelname == "WARNING"
    assert "query op: Request query parameter op must be" in switches[0].getMessage()


async def retrigger_against_prism_dialect(ids: list[str]) -> None:
    """Re-trigger ``ids`` where only RE_TRIGGER passes; check outcomes and requests."""
    async with stand_in(spec_answer, op_refused=prism_refusal({"RE_TRIGGER"})) as (port, paths):
        settings = JobSettings(rate=0, concurrency=4)
        base = f"http://127.0.0.1:{port}"
        async with bulkretry.retrigger(ids, settings_for(base), settings) as job:
            outcomes = [o async for o in job]
    assert all(isinstance(o, Retriggered) for o in outcomes), outcomes
    assert {(o.new_run_id, o.etag, o.attempts) for o in outcomes} == {("new-2", '"spec-e"', 1)}
    refused = [p for p in paths if p.endswith("op=re-trigger")]
    assert 1 <= len(refused) <= 4
    assert len(paths) == len(ids) + len(refused)
    assert all(p.endswith("op=RE_TRIGGER") for p in paths[len(refused) :])


async def test_both_spellings_refused_fail_each_run_with_the_apis_words():
    """When RE_TRIGGER is refused too, runs fail (422) saying which parameter and why."""
    async with stand_in(accept, op_refused=prism_refusal(set())) as (port, paths):
        settings = JobSettings(rate=0, concurrency=1)
        base = f"http://127.0.0.1:{port}"
        async with bulkretry.retrigger(["a", "b"], settings_for(base), settings) as job:
            outcomes = [o async for o in job]
    assert all(isinstance(o, Failed) and o.status == 422 for o in outcomes)
    assert outcomes[0].error == (
        "Invalid request: query op: Request query parameter op must be equal to one of the "
        "allowed values: RE_TRIGGER"
    )
    assert paths == [
        "/runs/a/action?op=re-trigger",
        "/runs/a/action?op=RE_TRIGGER",
        "/runs/b/action?op=RE_TRIGGER",
    ]


def flow_1387(_: str) -> web.Response:
    """A 400 about the run's state, whose words mention re-triggering but not the op."""
    message = "The flowRunId=x is in an invalid state=success for re-triggering."
    body = {"type": "https://ns.adobe.com/aep/errors/FLOW-1387-400", "errorMessage": message}
    return web.json_response(body, status=400)


async def test_a_400_about_the_run_is_not_taken_for_an_op_refusal():
    """Only a refusal naming op switches spellings; a run in the wrong state just fails."""
    async with stand_in(flow_1387) as (port, paths):
        base = f"http://127.0.0.1:{port}"
        async with bulkretry.retrigger(["a", "b"], settings_for(base), JobSettings(rate=0)) as job:
            outcomes = [o async for o in job]
    assert all(isinstance(o, Failed) and o.error.startswith("FLOW-1387-400") for o in outcomes)
    assert sorted(paths) == ["/runs/a/action?op=re-trigger", "/runs/b/action?op=re-trigger"]


def long_refusal(_: str) -> web.Response:
    """A refusal whose message is long and echoes the caller's token."""
    body = {"error_code": "400999", "message": "x" * 150 + " token=" + "t" * 12 + " " + "y" * 300}
    return web.json_response(body, status=400)


async def test_error_text_is_masked_then_cut_to_the_excerpt_limit():
    """An API message is masked first, then cut, so no part of a secret survives the cut."""
    async with stand_in(long_refusal) as (port, _):
        base = f"http://127.0.0.1:{port}"
        async with bulkretry.retrigger(["a"], settings_for(base), JobSettings(rate=0)) as job:
            [outcome] = [o async for o in job]
    assert isinstance(outcome, Failed)
    assert outcome.error.startswith("400999: " + "x" * 150 + " token=[REDACTED] yy")
    assert outcome.error.endswith("...") and len(outcome.error) == len("400999: ") + 203
    assert "tttt" not in outcome.error


@pytest.mark.slow
async def test_the_resend_after_an_op_refusal_keeps_to_the_rate():
    """Resends wait their turn: refusals arriving together are not resent in a burst."""
    starts: list[tuple[float, str]] = []
    refuse = prism_refusal({"RE_TRIGGER"}, until=time.monotonic() + 0.8)

    async def record(op: str) -> web.Response | None:
        starts.append((time.monotonic(), op))
        return await refuse(op)

    async with stand_in(spec_answer, op_refused=record) as (port, paths):
        settings = JobSettings(rate=5, concurrency=4)  # one start every 0.2 s
        base = f"http://127.0.0.1:{port}"
        ids = [f"r{n}" for n in range(4)]
        async with bulkretry.retrigger(ids, settings_for(base), settings) as job:
            assert all([isinstance(o, Retriggered) async for o in job])
    assert len(paths) == 8  # four refused together at 0.8 s, then four resent
    resent = [at for at, op in starts if op == "RE_TRIGGER"]
    # Sent at once, the four resends would start within milliseconds; paced, over 0.6 s.
    assert len(resent) == 4 and max(resent) - min(resent) >= 0.45
