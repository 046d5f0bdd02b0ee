"""The Flow Service client: one aiohttp session, the re-trigger call, run listing.

All aiohttp exceptions are mapped here, in ``_transport_error``, onto the two cases
the retry policy cares about: never sent (safe to resend) or sent with the answer
lost (maybe applied).
"""

from __future__ import annotations

import http
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson
import yarl

from ._attempts import Backoff, parse_retry_after
from ._auth import ImsTokens, StaticToken, TokenSource
from ._body import ANSWER_CAP, PAGE_CAP, read_capped
from ._errors import APIError, ConnectError, ConnectionLostError, TransportError
from ._settings import ApiSettings, ClientCredentials
from ._text import excerpt, scrub

RETRIGGER_OP: Final = "re-trigger"
"""The tutorial's spelling; the OpenAPI enum says ``RE_TRIGGER``. Send this one."""

_CONNECT_TIMEOUT_MAX: Final = 10.0
_CONNECT_SHARE: Final = 0.9

_SANDBOX_HINT: Final = (
    "check --sandbox/AEP_SANDBOX_NAME, a lower-case name such as prod, and that the "
    "credentials' product profile grants Flow Service access in that sandbox"
)
HINTS: Final[Mapping[str, str]] = {
    "400003": "a required header is missing: check --org/AEP_ORG_ID",
    "401013": "the access token is invalid or expired",
    "403000": "no x-api-key was sent: set AEP_API_KEY or AEP_CLIENT_ID",
    "403003": "the API key (x-api-key) is not the client ID of the credentials",
    "403010": "no access token was sent",
    "403025": "wrong organization, or the credentials are not entitled to Experience Platform "
    "in it: check --org/AEP_ORG_ID and the Developer Console project's product profile",
    "403027": "the organization ID is malformed, or the credentials have no Experience Platform "
    "product profile: check --org/AEP_ORG_ID, which ends in @AdobeOrg",
    "FLOW-1106-403": _SANDBOX_HINT,
    "FLOW-1606-403": _SANDBOX_HINT,
}
"""Advice appended to the API's own ``code: message`` for the refusals users hit most."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """A 2xx answer naming the new run."""

    new_run_id: str
    etag: str | None
    status: int


class FlowService:
    """Sends Flow Service requests with the five documented headers, refreshing auth on a 401."""

    def __init__(
        self, session: aiohttp.ClientSession, api: ApiSettings, tokens: TokenSource
    ) -> None:
        self._session = session
        self._base = api.base_url
        base = yarl.URL(api.base_url)
        self._scheme, self._authority = base.scheme, base.raw_authority
        self._path = base.raw_path.rstrip("/")  # a bare host has path '/': no '//runs'
        self._tokens = tokens
        self._headers = {
            "x-api-key": api.api_key,
            "x-gw-ims-org-id": api.org_id,
            "x-sandbox-name": api.sandbox,
            "Content-Type": "application/json",
        }
        self._authorized: tuple[str, dict[str, str]] = ("", self._headers)

    @property
    def tokens(self) -> TokenSource:
        """The token source, for redaction and start-up checks."""
        return self._tokens

    async def retrigger(self, run_id: str) -> Accepted:
        """POST the re-trigger for a validated run ID; raise the mapped error otherwise."""
        # Run IDs are validated to [A-Za-z0-9_-], so the URL is built pre-encoded: no parsing.
        url = yarl.URL.build(
            scheme=self._scheme,
            authority=self._authority,
            path=f"{self._path}/runs/{run_id}/action",
            query_string=f"op={RETRIGGER_OP}",
            encoded=True,
        )
        status, body, headers = await self._request("POST", url, cap=ANSWER_CAP)
        if not 200 <= status < 300:
            raise self._api_error(status, body, headers)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        new_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(new_id, str) or not new_id:
            shown = self._scrub(excerpt(body.decode("utf-8", "replace"), limit=80))
            raise APIError(status, None, f"answer is not the expected JSON with an id: {shown!r}")
        etag = answer.get("etag") if isinstance(answer, dict) else None
        return Accepted(
            new_run_id=new_id, etag=etag if isinstance(etag, str) else None, status=status
        )

    async def get_json(self, path_or_url: str, params: Sequence[tuple[str, str]] = ()) -> Any:  # noqa: ANN401 - JSON
        """GET a JSON document below the base URL (``_links`` hrefs are relative to it)."""
        url = resolve(self._base, path_or_url)
        status, body, headers = await self._request("GET", url, params, cap=PAGE_CAP)
        if not 200 <= status < 300:
            raise self._api_error(status, body, headers)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise APIError(status, None, "answer is not JSON") from None

    async def _request(
        self,
        method: str,
        url: str | yarl.URL,
        params: Sequence[tuple[str, str]] = (),
        *,
        cap: int,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        token = await self._tokens.token()
        status, body, headers = await self._send(method, url, params, token, cap)
        if status == 401 and self._tokens.refreshable:
            # Drop the refused token; a new one is fetched (single-flight) only if the caller
            # sends again, through the rate limit, as an attempt of its own.
            self._tokens.forget(token)
        return status, body, headers

    def _api_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> APIError:
        code, message = error_words(status, body)
        hint = HINTS.get(code or "")
        return APIError(
            status,
            code,
            self._scrub(f"{message} ({hint})" if hint else message),
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )

    def _scrub(self, text: str) -> str:
        """API text may echo what we sent: mask our secrets before the text goes anywhere."""
        return scrub(text, self._tokens.secrets())

    async def _send(
        self,
        method: str,
        url: str | yarl.URL,
        params: Sequence[tuple[str, str]],
        token: str,
        cap: int,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        try:
            async with self._session.request(
                method,
                url,
                params=params or None,
                headers=self._with_token(token),
                allow_redirects=False,
            ) as response:
                return response.status, await read_capped(response, cap), response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from exc

    def _with_token(self, token: str) -> dict[str, str]:
        if self._authorized[0] != token:  # built once per token, not per request
            self._authorized = (token, {**self._headers, "Authorization": f"Bearer {token}"})
        return self._authorized[1]


def resolve(base: str, href: str) -> str:
    """Resolve a ``_links`` href against the Flow Service root.

    Adobe documents ``/runs?continuationToken=...`` relative to the root; a path that
    already starts with the root's path, a query alone (for ``/runs``) and an absolute URL
    on the same origin are accepted too. Another origin is refused: our token would go there.
    """
    root, link = urlsplit(base), urlsplit(href)
    if link.scheme or link.netloc:
        if (link.scheme, link.netloc) != (root.scheme, root.netloc):
            raise APIError(200, None, f"refusing a next link to another host: {link.netloc}")
        return href
    if not link.path:
        return f"{base}/runs?{link.query}"
    if root.path and link.path.startswith(root.path + "/"):
        return urljoin(base, href)
    return urljoin(base + "/", href.lstrip("/"))


def _transport_error(exc: BaseException) -> TransportError:
    """The one place aiohttp's exceptions become ours."""
    name = exc.__class__.__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ConnectError(f"cannot connect: {name}: {exc}")
    if isinstance(exc, TimeoutError):
        return ConnectionLostError("timed out waiting for the answer")
    return ConnectionLostError(f"connection lost after sending: {name}")


def error_words(status: int, body: bytes) -> tuple[str | None, str]:
    """The API's own code and message, from a gateway, Flow Service or generic error body.

    Gateway: ``{"error_code", "message"}``. Flow Service: ``type`` ends in
    ``FLOW-<code>-<status>``, the message is ``errorMessage`` or ``report.detailed-message``
    (there is no ``detail``). Generic Platform errors: RFC 7807 ``title`` and ``detail``.
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict):
        if "error_code" in answer:
            return str(answer["error_code"]), str(answer.get("message") or "")
        if "type" in answer or "title" in answer:
            return _problem_words(answer)
        if "message" in answer:
            return None, str(answer["message"])
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "unexpected status"
    return None, f"HTTP {status} {phrase}"


def _problem_words(answer: Mapping[str, Any]) -> tuple[str | None, str]:
    kind = str(answer.get("type") or "").rstrip("/").rsplit("/", 1)[-1]
    title = str(answer.get("title") or "")
    code = kind if any(c.isdigit() for c in kind) else (title or None)
    report = answer.get("report")
    detailed = report.get("detailed-message") if isinstance(report, dict) else None
    for message in (answer.get("detail"), answer.get("errorMessage"), detailed):
        if isinstance(message, str) and message:
            return code, message
    return (code, title) if code != title else (None, title)


def make_tokens(
    session: aiohttp.ClientSession, api: ApiSettings, *, attempts: int, backoff: Backoff
) -> TokenSource:
    """The token source the configuration asks for."""
    if isinstance(api.credentials, ClientCredentials):
        return ImsTokens(session, api.credentials, attempts=attempts, backoff=backoff)
    return StaticToken(api.credentials)


@asynccontextmanager
async def open_session(
    concurrency: int, request_timeout: float
) -> AsyncIterator[aiohttp.ClientSession]:
    """One shared session, its connection pool sized to the concurrency."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    # The connect deadline ends strictly before the request's, so a connect that times
    # out is seen as ConnectionTimeoutError (never sent, safe to retry), not as a lost answer.
    client_timeout = aiohttp.ClientTimeout(
        total=request_timeout,
        connect=min(request_timeout * _CONNECT_SHARE, _CONNECT_TIMEOUT_MAX),
    )
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=client_timeout,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies
    ) as session:
        yield session
