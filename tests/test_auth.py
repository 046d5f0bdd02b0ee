"""OAuth Server-to-Server: one shared IMS token, fetched once, refreshed ahead and on a 401.

Everything runs over loopback HTTP: the emulator's IMS, or for answers the emulator cannot
give (odd ``expires_in``, redirects, echoed secrets) a tiny scripted IMS in this module.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from aiohttp import web

import bulkretry
from bulkretry import ApiSettings, AuthError, ClientCredentials, JobSettings, Retriggered, Secret
from bulkretry._api_settings import DEFAULT_SCOPES, check_url, load_api_settings
from bulkretry._auth import ImsTokens, StaticToken
from bulkretry._backoff import Backoff
from bulkretry._errors import UsageError
from bulkretry._flowservice import FlowService
from bulkretry.emulator import Emulator, Faults, Server, serve

from .conftest import API_KEY, CLIENT_SECRET, ORG, TOKEN, cli_env, make_emulator, run_cli

pytestmark = pytest.mark.anyio

FAST = Backoff(base=0)


class _Ceiling(random.Random):
    """Jitter that always picks the ceiling, so a test can see the backoff was waited."""

    def uniform(self, a: float, b: float) -> float:  # noqa: ARG002 - always the top
        return b


def full_backoff(base: float) -> Backoff:
    """Backoff with deterministic waits: base, then twice that, and so on."""
    return Backoff(base=base, rng=_Ceiling())


def creds(url: str, secret: str = CLIENT_SECRET, scopes: str = DEFAULT_SCOPES) -> ClientCredentials:
    """The test client's credentials against an IMS token endpoint."""
    return ClientCredentials(
        client_id=API_KEY, client_secret=Secret(secret), scopes=scopes, ims_url=url
    )


def oauth_settings(server: Server, secret: str = CLIENT_SECRET) -> ApiSettings:
    """Library settings that use OAuth against the emulator."""
    return ApiSettings(
        base_url=server.base_url,
        api_key=API_KEY,
        org_id=ORG,
        sandbox="prod",
        credentials=creds(server.ims_url, secret),
    )


def oauth_env(server: Server, **extra: str) -> dict[str, str]:
    """CLI environment with client credentials instead of a static token."""
    oauth = {
        "AEP_ACCESS_TOKEN": "",
        "AEP_API_KEY": "",
        "AEP_CLIENT_ID": API_KEY,
        "AEP_CLIENT_SECRET": CLIENT_SECRET,
    }
    return cli_env(server, **(oauth | extra))


def issued(emulator: Emulator) -> set[str]:
    """Every token the emulator's IMS has minted (the store keeps them all)."""
    return set(emulator.tokens._expiry)  # noqa: SLF001 - the emulator exposes no public list


def closed_port() -> int:
    """A loopback port with nothing listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def ims_tokens(
    url: str,
    *,
    secret: str = CLIENT_SECRET,
    attempts: int = 5,
    backoff: Backoff = FAST,
    scopes: str = DEFAULT_SCOPES,
) -> AsyncIterator[ImsTokens]:
    """A token provider with its own session, as the job builds one."""
    async with aiohttp.ClientSession() as session:
        yield ImsTokens(session, creds(url, secret, scopes), attempts=attempts, backoff=backoff)


@dataclass
class ScriptedIms:
    """An IMS that answers from a script (the last answer repeats) and records each request."""

    answers: list[tuple[int, Any, dict[str, str]]]
    forms: list[dict[str, str]] = field(default_factory=list)
    raw: list[tuple[str, str, str]] = field(default_factory=list)  # content type, query, body
    times: list[float] = field(default_factory=list)
    url: str = ""
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        """Record the form, then give the next scripted answer."""
        self.times.append(time.monotonic())
        body = await request.text()
        self.raw.append((request.content_type, request.query_string, body))
        self.forms.append({k: str(v) for k, v in (await request.post()).items()})
        await anyio.sleep(self.delay)
        status, answer, headers = self.answers[min(len(self.forms), len(self.answers)) - 1]
        return web.Response(
            status=status,
            body=orjson.dumps(answer),
            headers=headers,
            content_type="application/json",
        )


def granted(token: str, expires_in: Any = 86399) -> tuple[int, Any, dict[str, str]]:
    """A 200 token answer, as IMS gives it."""
    return 200, {"access_token": token, "token_type": "bearer", "expires_in": expires_in}, {}


@asynccontextmanager
async def scripted_ims(*answers: tuple[int, Any, dict[str, str]]) -> AsyncIterator[ScriptedIms]:
    """Serve a ``ScriptedIms`` on a free loopback port."""
    ims = ScriptedIms(list(answers))
    app = web.Application()
    app.router.add_post("/ims/token/v3", ims.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ims.url = f"http://127.0.0.1:{runner.addresses[0][1]}/ims/token/v3"
        yield ims
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running(emulator: Emulator) -> AsyncIterator[Server]:
    """An emulator built by the test, on loopback."""
    async with serve(emulator) as server:
        yield server


# --- the token request ---------------------------------------------------------------


async def test_token_form_has_exactly_the_four_client_credentials_fields():
    """The POST is a form of grant_type, client_id, client_secret and scope, nothing in the URL."""
    async with scripted_ims(granted("t-1")) as ims, ims_tokens(ims.url) as tokens:
        assert await tokens.token() == "t-1"
    assert ims.forms == [
        {
            "grant_type": "client_credentials",
            "client_id": API_KEY,
            "client_secret": CLIENT_SECRET,
            "scope": DEFAULT_SCOPES,
        }
    ]
    content_type, query, _ = ims.raw[0]
    assert (content_type, query) == ("application/x-www-form-urlencoded", "")


@pytest.mark.parametrize(
    ("env_scopes", "sent"),
    [(None, DEFAULT_SCOPES), ("openid,AdobeID,read_organizations",) * 2],
)
async def test_scopes_come_from_aep_scopes_or_the_default(emulator, server, env_scopes, sent):
    """AEP_SCOPES is sent verbatim as the scope; without it, the contract's default list."""
    env = {
        "AEP_ORG_ID": ORG,
        "AEP_CLIENT_ID": API_KEY,
        "AEP_CLIENT_SECRET": CLIENT_SECRET,
        "AEP_IMS_TOKEN_URL": server.ims_url,
    }
    if env_scopes:
        env["AEP_SCOPES"] = env_scopes
    credentials = load_api_settings(env).credentials
    assert isinstance(credentials, ClientCredentials)
    async with aiohttp.ClientSession() as session:
        await ImsTokens(session, credentials).token()
    assert emulator.stats.token_scopes == [sent]


async def test_one_token_is_fetched_before_the_first_request_and_shared(emulator, server):
    """A job fetches one token up front and every re-trigger carries it."""
    ids = [f"one-{n}" for n in range(30)]
    settings = JobSettings(rate=0, concurrency=10)
    async with bulkretry.retrigger(ids, oauth_settings(server), settings, backoff=FAST) as job:
        outcomes = [outcome async for outcome in job]
    assert all(isinstance(o, Retriggered) for o in outcomes)
    assert emulator.stats.token_requests == 1
    [token] = issued(emulator)
    assert {r.headers["authorization"] for r in emulator.stats.requests} == {f"Bearer {token}"}


async def test_a_job_fetches_its_token_even_before_any_input():
    """The token is fetched when the job starts, not when the first run ID arrives."""
    emulator = make_emulator()
    async with running(emulator) as server:
        async with bulkretry.retrigger([], oauth_settings(server), JobSettings(rate=0)) as job:
            assert emulator.stats.token_requests == 1
            assert [o async for o in job] == []
        assert emulator.stats.requests == []


# --- single flight, refresh ahead ----------------------------------------------------


async def test_32_concurrent_calls_on_a_missing_token_make_one_ims_request(emulator, server):
    """Thirty-two workers starting at once share one IMS request and one token."""
    results: list[str] = []
    async with ims_tokens(server.ims_url) as tokens:

        async def ask() -> None:
            results.append(await tokens.token())

        async with anyio.create_task_group() as group:
            for _ in range(32):
                group.start_soon(ask)
    assert len(results) == 32 and len(set(results)) == 1
    assert emulator.stats.token_requests == 1


async def test_32_concurrent_calls_on_an_expired_token_make_one_ims_request():
    """Thirty-two workers meeting an expired token cause one refresh, and all get the new one."""
    async with (
        scripted_ims(granted("old", 0.2), granted("new", 60)) as ims,
        ims_tokens(ims.url) as tokens,
    ):
        assert await tokens.token() == "old"
        await anyio.sleep(0.25)
        results: list[str] = []

        async def ask() -> None:
            results.append(await tokens.token())

        async with anyio.create_task_group() as group:
            for _ in range(32):
                group.start_soon(ask)
    assert results == ["new"] * 32
    assert len(ims.forms) == 2


@pytest.mark.slow
async def test_the_token_is_refreshed_ahead_of_its_expiry():
    """Within the last tenth of its lifetime the token is replaced before it actually expires."""
    async with (
        scripted_ims(granted("first", 2), granted("second", 2)) as ims,
        ims_tokens(ims.url) as tokens,
    ):
        assert await tokens.token() == "first"
        await anyio.sleep(1.5)
        assert await tokens.token() == "first"  # well inside the lifetime: no request
        assert len(ims.forms) == 1
        await anyio.sleep(0.32)  # now past 90 % of the lifetime, still before expiry
        assert await tokens.token() == "second"
    assert len(ims.forms) == 2
    assert ims.times[1] - ims.times[0] < 2.0


@pytest.mark.slow
async def test_a_failed_early_refresh_keeps_the_valid_token_until_it_expires():
    """IMS failing inside the refresh margin: the old token serves until expiry, then AuthError."""
    down = (503, {"error": "temporarily_unavailable"}, {})
    async with (
        scripted_ims(granted("first", 2), down) as ims,
        ims_tokens(ims.url, attempts=2) as tokens,
    ):
        await tokens.token()
        await anyio.sleep(1.82)
        assert await tokens.token() == "first"  # refresh failed, token still valid
        assert len(ims.forms) == 3
        assert await tokens.token() == "first"  # no hammering IMS on every call
        assert len(ims.forms) == 3
        await anyio.sleep(0.25)
        with pytest.raises(AuthError, match="cannot get a token"):
            await tokens.token()
    assert len(ims.forms) == 5


async def test_a_failed_fetch_is_shared_by_every_waiting_worker():
    """When IMS is down, 32 waiting workers share one fetch's failure instead of 32 retry series."""
    down = (503, {"error": "temporarily_unavailable"}, {})
    errors: list[str] = []
    async with scripted_ims(down) as ims, ims_tokens(ims.url, attempts=2) as tokens:

        async def ask() -> None:
            try:
                await tokens.token()
            except AuthError as exc:
                errors.append(str(exc))

        async with anyio.create_task_group() as group:
            for _ in range(32):
                group.start_soon(ask)
    assert len(errors) == 32 and all("HTTP 503" in e for e in errors)
    assert len(ims.forms) == 2


async def test_a_cancelled_fetch_lets_the_next_waiter_fetch_for_itself():
    """A worker cancelled mid-fetch (job stopped) leaves no false AuthError for those waiting."""
    async with scripted_ims(granted("t-1")) as ims, ims_tokens(ims.url) as tokens:
        ims.delay = 0.3
        got: list[str] = []

        async def cancelled() -> None:
            with anyio.move_on_after(0.1):
                await tokens.token()

        async def waiting() -> None:
            await anyio.sleep(0.05)
            got.append(await tokens.token())

        async with anyio.create_task_group() as group:
            group.start_soon(cancelled)
            group.start_soon(waiting)
    assert got == ["t-1"]
    assert len(ims.forms) == 2


# --- a 401 --------------------------------------------------------------------------


async def test_concurrent_refreshes_after_401s_make_one_ims_request(emulator, server):
    """Ten workers refused with the same token cause one refresh; later refusals of it, none."""
    async with ims_tokens(server.ims_url) as tokens:
        stale = await tokens.token()
        results: list[str] = []

        async def refused() -> None:
            tokens.forget(stale)  # what the client does on a 401, before sending again
            results.append(await tokens.token())

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(refused)
        assert len(set(results)) == 1 and results[0] != stale
        tokens.forget(stale)
        assert await tokens.token() == results[0]
        assert await tokens.token() == results[0]
    assert emulator.stats.token_requests == 2


async def test_a_refused_token_is_not_handed_out_again_when_the_refresh_fails():
    """After a 401 and a failed refresh, the refused token is dropped: callers get AuthError."""
    down = (503, {"error": "temporarily_unavailable"}, {})
    async with (
        scripted_ims(granted("refused", 3600), down) as ims,
        ims_tokens(ims.url, attempts=1) as tokens,
    ):
        stale = await tokens.token()
        tokens.forget(stale)
        with pytest.raises(AuthError):
            await tokens.token()
        with pytest.raises(AuthError):
            await tokens.token()
    assert len(ims.forms) == 3


async def test_a_401_with_an_issued_token_refreshes_once_and_resends():
    """A token that expired server-side mid-job gets a 401, one refresh, and one more attempt."""
    emulator = make_emulator(token_lifetime=0.3)  # IMS says 1 s; the gateway knows better

    async def ids() -> AsyncIterator[str]:
        yield "before-expiry"
        await anyio.sleep(0.5)
        yield "after-expiry"

    async with running(emulator) as server:
        api, settings = oauth_settings(server), JobSettings(rate=0, concurrency=1)
        async with bulkretry.retrigger(ids(), api, settings, backoff=FAST) as job:
            outcomes = {o.run_id: o async for o in job}
    assert isinstance(outcomes["before-expiry"], Retriggered)
    assert isinstance(outcomes["after-expiry"], Retriggered)
    assert (outcomes["before-expiry"].attempts, outcomes["after-expiry"].attempts) == (1, 2)
    assert emulator.stats.retriggers == {"before-expiry": 1, "after-expiry": 1}
    assert emulator.stats.token_requests == 2
    assert emulator.stats.responses[401] == 1
    sent = [
        r.headers["authorization"] for r in emulator.stats.requests if r.run_id == "after-expiry"
    ]
    assert len(sent) == 2 and sent[0] != sent[1]


@pytest.mark.slow
async def test_tokens_expiring_every_1_5_s_over_300_ids_apply_each_once_without_a_storm():
    """Tokens dying every 1.5 s in a 6 s job: each ID applied once, ~one IMS request a lifetime."""
    lifetime = 1.5
    emulator = make_emulator(token_lifetime=lifetime)
    ids = [f"long-{n}" for n in range(300)]
    async with running(emulator) as server:
        started = time.monotonic()
        settings = JobSettings(rate=50, concurrency=10)
        async with bulkretry.retrigger(ids, oauth_settings(server), settings, backoff=FAST) as job:
            outcomes = [o async for o in job]
        elapsed = time.monotonic() - started
    assert elapsed > 5
    assert [o for o in outcomes if not isinstance(o, Retriggered)] == []
    assert emulator.stats.retriggers == dict.fromkeys(ids, 1)
    assert emulator.stats.responses[401] >= 1  # tokens really expired under the job
    assert emulator.stats.token_requests <= elapsed / lifetime * 1.25 + 2
    assert emulator.stats.token_requests >= elapsed / 2  # and were replaced as they died


# --- IMS failures -------------------------------------------------------------------


async def test_ims_5xx_and_dropped_connections_are_retried_with_backoff():
    """A 503 then a dropped connection are retried after growing waits, then the token comes."""
    emulator = make_emulator(faults=Faults(ims_script=["unavailable", "drop_before", "ok"]))
    async with (
        running(emulator) as server,
        ims_tokens(server.ims_url, backoff=full_backoff(0.1)) as tokens,
    ):
        started = time.monotonic()
        token = await tokens.token()
        elapsed = time.monotonic() - started
    assert token in issued(emulator)
    assert emulator.stats.token_requests == 3
    assert elapsed >= 0.1 + 0.2


async def test_ims_unavailable_beyond_the_attempts_is_an_auth_error():
    """When every attempt gets a 5xx, AuthError names IMS and the last error."""
    emulator = make_emulator(faults=Faults(ims_unavailable=1.0))
    async with running(emulator) as server, ims_tokens(server.ims_url, attempts=3) as tokens:
        with pytest.raises(AuthError, match=r"cannot get a token from IMS.*HTTP 503"):
            await tokens.token()
    assert emulator.stats.token_requests == 3


@pytest.mark.slow
async def test_ims_429_is_retried_no_sooner_than_retry_after():
    """IMS throttling is waited out for its Retry-After, then the token is fetched."""
    emulator = make_emulator(faults=Faults(ims_script=["throttle", "ok"], retry_after=1))
    async with running(emulator) as server, ims_tokens(server.ims_url) as tokens:
        started = time.monotonic()
        await tokens.token()
        assert time.monotonic() - started >= 1.0
    assert emulator.stats.token_requests == 2


async def test_an_ims_retry_after_beyond_the_limit_is_an_auth_error_at_once():
    """IMS asking for an hour's wait ends the fetch now rather than hanging the job."""
    async with (
        scripted_ims((429, {"error": "too_many"}, {"Retry-After": "3600"})) as ims,
        ims_tokens(ims.url) as tokens,
    ):
        with pytest.raises(AuthError, match="3600"):
            await tokens.token()
    assert len(ims.forms) == 1


async def test_an_ims_retry_after_within_the_limit_is_waited_out():
    """IMS has the same 300 s Retry-After cap as Flow Service: two minutes are waited out."""
    async with (
        scripted_ims((429, {"error": "too_many"}, {"Retry-After": "120"})) as ims,
        ims_tokens(ims.url) as tokens,
    ):
        with anyio.move_on_after(0.3) as scope:
            await tokens.token()
    assert scope.cancelled_caught  # still waiting: no AuthError
    assert len(ims.forms) == 1


async def test_connection_refused_is_retried_then_auth_error():
    """Nothing listening at the IMS URL: every attempt is made, then AuthError says why."""
    url = f"http://127.0.0.1:{closed_port()}/ims/token/v3"
    async with ims_tokens(url, attempts=3, backoff=full_backoff(0.05)) as tokens:
        started = time.monotonic()
        with pytest.raises(AuthError, match=r"cannot get a token from IMS.*ClientConnectorError"):
            await tokens.token()
        assert time.monotonic() - started >= 0.05 + 0.1


async def test_ims_refusing_the_credentials_is_an_auth_error_at_once(emulator, server):
    """A wrong secret is a 400 from IMS: AuthError on the first answer, no retries."""
    async with ims_tokens(server.ims_url, secret="wrong-secret-123", attempts=5) as tokens:
        with pytest.raises(AuthError, match=r"IMS refused the credentials.*invalid_client"):
            await tokens.token()
    assert emulator.stats.token_requests == 1


async def test_a_refused_job_sends_no_retrigger(emulator, server):
    """When IMS refuses the credentials the job raises AuthError before any re-trigger."""
    with pytest.raises(AuthError):
        async with bulkretry.retrigger(["r-1"], oauth_settings(server, "nope"), JobSettings()):
            pytest.fail("the job must not start")
    assert emulator.stats.requests == []


async def test_an_ims_redirect_is_an_auth_error_at_once():
    """A 3xx from the token endpoint is not followed (the secret would go along) nor retried."""
    moved = (302, {}, {"Location": "http://127.0.0.1:1/elsewhere"})
    async with scripted_ims(moved) as ims, ims_tokens(ims.url) as tokens:
        with pytest.raises(AuthError, match="redirects are not followed"):
            await tokens.token()
    assert len(ims.forms) == 1


@pytest.mark.parametrize("expires_in", [0, -5, "nan", "inf", None, "soon"])
async def test_an_unusable_expires_in_is_an_auth_error(expires_in):
    """A token announced as already expired, or with no sane lifetime, is refused, not reused."""
    async with scripted_ims(granted("odd", expires_in)) as ims, ims_tokens(ims.url) as tokens:
        with pytest.raises(AuthError, match="expire"):
            await tokens.token()
    assert len(ims.forms) == 1


# --- URLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://ims.example/ims/token/v3",
        "http://127.0.0.1.nip.io/x",
        "http://localhost.example/x",
        "http://10.0.0.1/x",
        "http://0.0.0.0/x",
        "ftp://127.0.0.1/x",
    ],
)
def test_plain_http_is_refused_for_hosts_that_are_not_loopback(url):
    """Tokens and secrets only travel in clear text to this machine."""
    for flag in ("--ims-url", "--base-url"):
        with pytest.raises(UsageError, match=flag):
            check_url(url, flag)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2:8/ims",
        "http://[::1]:9/ims",
        "http://LOCALHOST/ims",
        "https://ims-na1.adobelogin.com/ims/token/v3",
    ],
)
def test_loopback_http_and_any_https_are_accepted(url):
    """Loopback http (any 127/8 address, ::1, localhost) and https anywhere pass unchanged."""
    assert check_url(url, "--ims-url") == url


async def test_retrigger_url_is_built_below_the_base_path_as_given(emulator, server):
    """A base URL with a trailing slash still reaches {base path}/runs/{id}/action?op=re-trigger."""
    api = load_api_settings(
        {"AEP_ORG_ID": ORG, "AEP_API_KEY": API_KEY, "AEP_ACCESS_TOKEN": TOKEN},
        base_url=server.base_url + "/",
    )
    assert api.base_url == server.base_url
    async with aiohttp.ClientSession() as session:
        await FlowService(session, api, StaticToken(Secret(TOKEN))).retrigger("path-1")
    [request] = emulator.stats.requests
    assert request.path == "/data/foundation/flowservice/runs/path-1/action"
    assert request.query_all == (("op", "re-trigger"),)


# --- the command line --------------------------------------------------------------


def test_cli_wrong_secret_exits_2_saying_so_and_sends_nothing(emulator, thread_server):
    """IMS refusing the secret: exit 2, one clear line, no re-trigger, the secret not echoed."""
    wrong = "Wr0ng-Secret-Value-987"
    result = run_cli(
        ["retry"], env=oauth_env(thread_server, AEP_CLIENT_SECRET=wrong), stdin=b"w-1\nw-2\n"
    )
    assert result.code == 2
    assert "IMS refused the credentials" in result.stderr and "AEP_CLIENT_SECRET" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert wrong not in result.stderr and wrong.encode() not in result.stdout
    assert emulator.stats.requests == []
    assert emulator.stats.token_requests == 1


def test_cli_ims_unreachable_exits_2_quickly(emulator, thread_server):
    """Nothing listening at AEP_IMS_TOKEN_URL: exit 2 within seconds, saying IMS is unreachable."""
    env = oauth_env(
        thread_server, AEP_IMS_TOKEN_URL=f"http://127.0.0.1:{closed_port()}/ims/token/v3"
    )
    started = time.monotonic()
    result = run_cli(["retry", "--max-attempts", "2"], env=env, stdin=b"u-1\n", timeout=30)
    assert result.code == 2
    assert time.monotonic() - started < 10
    assert "cannot get a token from IMS" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == b""
    assert emulator.stats.requests == []


def test_cli_client_credentials_win_over_a_static_token_with_one_warning(emulator, thread_server):
    """Both kinds of credentials: exactly one warning on stderr, and OAuth tokens are sent."""
    env = oauth_env(thread_server, AEP_ACCESS_TOKEN=TOKEN)
    result = run_cli(["retry", "--rate", "0"], env=env, stdin=b"b-1\nb-2\n")
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "AEP_ACCESS_TOKEN" in warnings[0]
    assert emulator.stats.token_requests == 1
    [token] = issued(emulator)
    assert {r.headers["authorization"] for r in emulator.stats.requests} == {f"Bearer {token}"}


def test_cli_secret_file_works_end_to_end(emulator, thread_server, tmp_path):
    """AEP_CLIENT_SECRET_FILE (trailing newline and all) authenticates a real job."""
    path = tmp_path / "client-secret"
    path.write_text(CLIENT_SECRET + "\n")
    env = oauth_env(thread_server, AEP_CLIENT_SECRET_FILE=str(path))
    del env["AEP_CLIENT_SECRET"]
    result = run_cli(["retry", "--rate", "0"], env=env, stdin=b"sf-1\n")
    assert result.code == 0, result.stderr
    assert [line["run_id"] for line in result.events("retriggered")] == ["sf-1"]
    assert emulator.stats.token_requests == 1


def test_api_key_defaults_to_aep_client_id_even_with_a_static_token():
    """AEP_API_KEY defaults to AEP_CLIENT_ID as the contract says, whichever token is used."""
    env = {"AEP_ORG_ID": ORG, "AEP_CLIENT_ID": API_KEY, "AEP_ACCESS_TOKEN": TOKEN}
    settings = load_api_settings(env)
    assert (settings.api_key, settings.credentials) == (API_KEY, Secret(TOKEN))


async def test_a_token_without_expires_in_is_used_for_the_usual_day():
    """An IMS answer without expires_in is accepted: Adobe's tokens live a day, a 401 refreshes."""
    answer = (200, {"access_token": "no-lifetime-token", "token_type": "bearer"}, {})
    async with scripted_ims(answer) as ims, ims_tokens(ims.url) as tokens:
        assert await tokens.token() == "no-lifetime-token"
        assert await tokens.token() == "no-lifetime-token"
    assert len(ims.forms) == 1
