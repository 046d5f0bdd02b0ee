"""Secret hygiene: the client secret and every bearer token stay out of every output.

Full CLI jobs are run against the emulator (successes, faults, expiring tokens, refusals),
and stdout, stderr and the journal are searched for the client secret, the static token
and every token the emulator's IMS issued.
"""

from __future__ import annotations

import dataclasses
import io
import traceback
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

from bulkretry import ApiSettings, AuthError, Failed, Secret, UsageError
from bulkretry._api_settings import check_url, load_api_settings
from bulkretry._auth import StaticToken
from bulkretry._report import Redactor, Report
from bulkretry._text import REDACTED
from bulkretry.emulator import Emulator, Faults, Run, serve_in_thread

from .conftest import API_KEY, CLIENT_SECRET, ORG, TOKEN, CliResult, cli_env, make_emulator, run_cli
from .test_auth import (
    closed_port,
    granted,
    ims_tokens,
    issued,
    oauth_env,
    oauth_settings,
    scripted_ims,
)

pytestmark = pytest.mark.anyio

LOUD = ["--log-level", "debug", "--progress"]  # every stderr channel switched on


def known_secrets(emulator: Emulator, *extra: str) -> set[str]:
    """The client secret, the static token and every token IMS issued."""
    return {CLIENT_SECRET, TOKEN, *issued(emulator), *extra}


def assert_clean(outputs: Iterable[bytes | str], secrets: Iterable[str]) -> None:
    """None of ``secrets`` appears in any of ``outputs``."""
    for output in outputs:
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        leaked = sorted(secret for secret in secrets if secret in text)
        assert not leaked, f"secrets leaked: {[s[:6] + '…' for s in leaked]}"


def streams(result: CliResult, *files: Path) -> list[bytes | str]:
    """Everything a job wrote: stdout, stderr and the named files."""
    return [result.stdout, result.stderr, *(path.read_bytes() for path in files if path.exists())]


FAULTY = Faults(
    retry_after=0,
    script={
        "garbled-1": ["garbled_after"],
        "error-1": ["error_after"],
        "drop-1": ["drop_after"],
        "unavailable-1": ["unavailable", "ok"],
        "gone-1": ["drop_before", "drop_before", "drop_before"],
    },
)
DONE = Run(id="done-1", flow_id="f", status="success", output_records=10)  # refused: 400
FAULTY_IDS = b"".join(
    b"%s\n" % name.encode()
    for name in [
        *FAULTY.script,
        *(f"plain-{n}" for n in range(40)),
        "not valid!",
        "plain-1",
        "done-1",
    ]
)


@pytest.mark.slow
def test_oauth_job_with_faults_expiring_tokens_and_a_journal_leaks_nothing(tmp_path):
    """Garbled, 5xx, dropped answers, refusals, mid-job 401s: no secret or token in the output."""
    emulator = make_emulator(token_lifetime=0.4, faults=FAULTY)  # tokens die before IMS says
    emulator.add_run(DONE)
    journal = tmp_path / "job.journal"
    with serve_in_thread(emulator) as server:
        args = [
            "retry",
            "--rate",
            "30",
            "--concurrency",
            "4",
            "--max-attempts",
            "3",
            "--journal",
            str(journal),
            *LOUD,
        ]
        first = run_cli(args, env=oauth_env(server), stdin=FAULTY_IDS)
        again = run_cli([*args, "--retry-uncertain"], env=oauth_env(server), stdin=FAULTY_IDS)
    assert first.code == 1, first.stderr
    events = {line["event"] for line in first.lines}
    assert events >= {"retriggered", "uncertain", "failed", "skipped"}
    assert emulator.stats.responses[401] >= 1 and len(issued(emulator)) >= 3
    assert again.code in {0, 1}
    assert_clean([*streams(first), *streams(again, journal)], known_secrets(emulator))


@pytest.mark.parametrize("token", [TOKEN, "refused-static-token-Zx81q"])
def test_static_token_jobs_leak_no_token(tmp_path, token):
    """A working and a refused static token: neither appears in stdout, stderr or the journal."""
    emulator = make_emulator(faults=FAULTY)
    emulator.add_run(DONE)
    journal = tmp_path / "job.journal"
    env_extra = {"AEP_ACCESS_TOKEN": token}
    with serve_in_thread(emulator) as server:
        result = run_cli(
            ["retry", "--rate", "0", "--journal", str(journal), *LOUD],
            env=cli_env(server, **env_extra),
            stdin=FAULTY_IDS,
        )
    assert result.code == 1
    if token != TOKEN:
        assert "401013" in result.stdout.decode()  # the refusal is reported, the token is not
    assert_clean(streams(result, journal), known_secrets(emulator, token))


@pytest.mark.parametrize("why", ["wrong-secret", "ims-unreachable", "ims-down"])
def test_jobs_that_cannot_authenticate_leak_no_secret(why):
    """Refused, unreachable or failing IMS: exit 2 with one clear line, and no secret in it."""
    wrong = "Wr0ng-but-still-secret-5150"
    emulator = make_emulator(faults=Faults(ims_unavailable=1.0) if why == "ims-down" else None)
    with serve_in_thread(emulator) as server:
        env = oauth_env(server, AEP_CLIENT_SECRET=wrong if why == "wrong-secret" else CLIENT_SECRET)
        if why == "ims-unreachable":
            env["AEP_IMS_TOKEN_URL"] = f"http://127.0.0.1:{closed_port()}/ims/token/v3"
        result = run_cli(["retry", "--max-attempts", "2", *LOUD], env=env, stdin=b"x-1\n")
    assert result.code == 2
    assert "bulkretry: error: " in result.stderr
    assert emulator.stats.requests == []
    assert_clean(streams(result), known_secrets(emulator, wrong))


def test_failed_listing_with_oauth_leaks_nothing():
    """`bulkretry failed` under expiring OAuth tokens and a flaky page writes no secret."""
    emulator = make_emulator(token_lifetime=0.3, faults=Faults(list_script=["unavailable"]))
    for n in range(5):
        emulator.add_run(Run(id=f"lf-{n}", flow_id="flow-1", errors=(("E-1", "boom"),)))
    with serve_in_thread(emulator) as server:
        result = run_cli(
            ["failed", "--flow-id", "flow-1", "--log-level", "debug"], env=oauth_env(server)
        )
    assert result.code == 0, result.stderr
    assert len(result.lines) == 5
    assert_clean(streams(result), known_secrets(emulator))


# --- reprs and exception messages ---------------------------------------------------


def rendered(*objects: object) -> str:
    """Every way an object commonly turns into text: repr, str, format, asdict."""
    parts = []
    for obj in objects:
        parts += [repr(obj), str(obj), f"{obj}", f"{obj!r}"]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            parts.append(str(dataclasses.asdict(obj)))
    return "\n".join(parts)


async def test_settings_and_token_sources_mask_secrets_in_every_repr(server):
    """ApiSettings, ClientCredentials, Secret, ImsTokens (holding a token) and StaticToken mask."""
    oauth = oauth_settings(server)
    static = dataclasses.replace(oauth, credentials=Secret(TOKEN))
    async with ims_tokens(server.ims_url) as tokens:
        token = await tokens.token()
        text = rendered(
            oauth,
            static,
            oauth.credentials,
            Secret(CLIENT_SECRET),
            tokens,
            StaticToken(Secret(TOKEN)),
        )
    assert "***" in text
    assert_clean([text], {CLIENT_SECRET, TOKEN, token})


def test_settings_from_the_environment_mask_secrets():
    """Settings loaded from AEP_* variables, with a warning, show no secret anywhere."""
    env = {
        "AEP_ORG_ID": ORG,
        "AEP_CLIENT_ID": API_KEY,
        "AEP_CLIENT_SECRET": CLIENT_SECRET,
        "AEP_ACCESS_TOKEN": TOKEN,
    }
    settings = load_api_settings(env)
    assert isinstance(settings, ApiSettings) and settings.warnings
    assert_clean([rendered(settings), *settings.warnings], {CLIENT_SECRET, TOKEN})


def described(exc: BaseException) -> str:
    """An exception as a user or a log could see it: message, repr, args and traceback."""
    return "\n".join([str(exc), repr(exc), repr(exc.args), *traceback.format_exception(exc)])


async def test_auth_errors_carry_no_secret(server):
    """AuthError from a refusal, an outage or an unreachable IMS never quotes the secret."""
    errors: list[AuthError] = []
    wrong = "Wr0ng-secret-in-error-9"
    urls = [(server.ims_url, wrong), (f"http://127.0.0.1:{closed_port()}/ims", CLIENT_SECRET)]
    for url, secret in urls:
        async with ims_tokens(url, secret=secret, attempts=2) as tokens:
            with pytest.raises(AuthError) as caught:
                await tokens.token()
            errors.append(caught.value)
    assert_clean([described(e) for e in errors], {CLIENT_SECRET, wrong})


async def test_an_ims_that_echoes_the_secret_is_scrubbed_from_the_error():
    """Should IMS quote the secret back in its error, AuthError masks it."""
    echo = (400, {"error": "invalid_client", "error_description": f"bad {CLIENT_SECRET}"}, {})
    unavailable = (503, {"error": "down", "error_description": f"for {CLIENT_SECRET}"}, {})
    for answer in (echo, unavailable):
        async with scripted_ims(answer) as ims, ims_tokens(ims.url, attempts=1) as tokens:
            with pytest.raises(AuthError) as caught:
                await tokens.token()
        assert "[REDACTED]" in str(caught.value)
        assert_clean([described(caught.value)], {CLIENT_SECRET})


async def test_a_refresh_failure_mid_job_is_an_auth_error_without_secrets():
    """A 401 whose refresh IMS refuses yields an AuthError that names IMS, not the token."""
    refused = (401, {"error": "invalid_client", "error_description": "client disabled"}, {})
    async with (
        scripted_ims(granted("mid-job-token-77"), refused) as ims,
        ims_tokens(ims.url) as tokens,
    ):
        stale = await tokens.token()
        tokens.forget(stale)  # a 401 refused it
        with pytest.raises(AuthError, match="IMS refused the credentials") as caught:
            await tokens.token()
    assert_clean([described(caught.value)], {CLIENT_SECRET, stale})


# --- redaction of output lines ------------------------------------------------------


def test_redactor_scrubs_a_secret_placed_in_a_field():
    """The structlog processor replaces a known secret inside any string field."""
    redactor = Redactor(lambda: [CLIENT_SECRET, "", TOKEN])
    event = {"event": "failed", "error": f"echo {CLIENT_SECRET} and Bearer {TOKEN}", "attempts": 2}
    scrubbed = orjson.loads(redactor.rendered(None, "error", orjson.dumps(event)))
    assert scrubbed["error"] == f"echo {REDACTED} and Bearer {REDACTED}"
    assert scrubbed["attempts"] == 2


def test_report_lines_never_carry_a_known_secret():
    """A failed outcome quoting a token is written with the token redacted."""
    out = io.BytesIO()
    report = Report(out, lambda: (TOKEN,))
    report.outcome(
        Failed(run_id="r-1", status=401, error=f"gateway said Bearer {TOKEN} is bad", attempts=1)
    )
    report.summary(0.1)
    [line, summary] = [orjson.loads(raw) for raw in out.getvalue().splitlines()]
    assert line["error"] == f"gateway said Bearer {REDACTED} is bad"
    assert summary["event"] == "summary"
    assert TOKEN.encode() not in out.getvalue()


# --- URLs carrying credentials ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://svc:Pa55-in-url@ims.example/ims/token/v3",
        "http://svc:Pa55-in-url@127.0.0.1:1/x",
        "http://svc:Pa55-in-url@[::1",
        "ftp://svc:Pa55-in-url@host/x",
    ],
)
def test_urls_with_a_password_are_refused_without_echoing_it(url):
    """A user:password@ URL is a usage error whose message does not repeat the password."""
    with pytest.raises(UsageError) as caught:
        check_url(url, "--ims-url")
    assert "--ims-url" in str(caught.value)
    assert "Pa55-in-url" not in str(caught.value)


def test_cli_refuses_an_ims_url_with_a_password(emulator, thread_server):
    """AEP_IMS_TOKEN_URL with user:password@: exit 2 before any request, password not printed."""
    ims = thread_server.ims_url.replace("http://", "http://svc:Pa55-in-url@")
    result = run_cli(["retry"], env=oauth_env(thread_server, AEP_IMS_TOKEN_URL=ims), stdin=b"p-1\n")
    assert result.code == 2 and "user:password" in result.stderr
    assert "Pa55-in-url" not in result.stderr
    assert emulator.stats.token_requests == 0 and emulator.stats.requests == []
