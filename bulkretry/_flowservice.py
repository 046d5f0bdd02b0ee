"""The Flow Service client: one aiohttp session, the re-trigger call, run reads and listing.

All aiohttp exceptions are mapped here, in ``_transport_error``, onto the two cases the
retry policy cares about: never sent (safe to resend) or sent with the answer lost (maybe
applied).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson
import yarl
from multidict import CIMultiDict

from ._answers import HINTS, error_words, refuses_op
from ._api_settings import ApiSettings, ClientCredentials
from ._auth import ImsTokens, StaticToken, TokenSource
from ._backoff import Backoff, parse_retry_after
from ._body import ANSWER_CAP, PAGE_CAP, read_capped
from ._errors import APIError, ConnectError, ConnectionLostError, TransportError
from ._sources import check_run_id
from ._text import excerpt, scrub

RETRIGGER_OPS: Final = ("re-trigger", "RE_TRIGGER")
"""The tutorial's spelling, sent first, then the OpenAPI enum's once an answer refuses it."""
_OP_REFUSALS: Final = frozenset({400, 422})
_log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_MAX: Final = 10.0
_SCRUB_WINDOW: Final = 8192
"""Bytes of an unexpected 2xx body masked before the excerpt is cut: room for a long token."""
_CONNECT_MARGIN: Final = (0.5, 1.0)
"""The connect deadline ends this far before the request's: a share of it, or 1 s if more."""


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
            "Accept": "application/json",
        }
        self._op = RETRIGGER_OPS[0]
        self._authorized: tuple[str, CIMultiDict[str]] = ("", CIMultiDict())

    @property
    def tokens(self) -> TokenSource:
        """The token source, for redaction and start-up checks."""
        return self._tokens

    @property
    def op(self) -> str:
        """The re-trigger ``op`` being sent: the tutorial's until an answer refuses it."""
        return self._op

    async def retrigger(
        self, run_id: str, *, admit: Callable[[], Awaitable[object]] | None = None
    ) -> Accepted:
        """POST the re-trigger for a validated run ID; raise the mapped error otherwise.

        An answer refusing the ``op`` spelling applied nothing: the client switches to the
        other spelling for every later request and resends at once, after ``admit`` (the
        caller's pace) lets it.
        """
        while True:
            op = self._op
            url = self._action_url(run_id, op)
            status, body, headers = await self._request("POST", url, (), ANSWER_CAP)
            if op == RETRIGGER_OPS[-1] or status not in _OP_REFUSALS or not refuses_op(body, op):
                break
            self._switch_op(op, status, body)
            if admit is not None:
                await admit()
        if not 200 <= status < 300:
            raise self._api_error(status, body, headers)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        new_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or not isinstance(new_id, str) or not new_id:
            # Mask first, then cut: a cut could leave a prefix of a token unrecognised.
            shown = excerpt(self._scrub(body[:_SCRUB_WINDOW].decode("utf-8", "replace")), 80)
            raise APIError(status, None, f"answer is not the expected JSON with an id: {shown!r}")
        self._check_new_id(status, new_id)
        etag = _etag(answer)  # shown verbatim, except for an echo of our secrets
        return Accepted(new_run_id=new_id, etag=etag and self._scrub(etag), status=status)

    def _check_new_id(self, status: int, new_id: str) -> None:
        """A new run ID goes to every output, the journal and the history: it must be one.

        An ID echoing a secret, or breaking the run-ID rule (a newline, 129 characters), is
        not the expected answer: ``uncertain``, since the 2xx may have applied the re-trigger.
        """
        masked = self._scrub(new_id)
        if masked != new_id:
            raise APIError(status, None, "answer's id echoes a credential: not a run ID")
        if not isinstance(check_run_id(new_id), str):
            shown = excerpt(masked, 80)
            raise APIError(status, None, f"answer's id is not a valid run ID: {shown!r}")

    def _switch_op(self, refused: str, status: int, body: bytes) -> None:
        """Move every worker to the next spelling, once, saying so on stderr."""
        if self._op != refused:
            return  # another worker's answer switched it already
        self._op = RETRIGGER_OPS[RETRIGGER_OPS.index(refused) + 1]
        code, message = error_words(status, body)
        words = excerpt(self._scrub(f"{code}: {message}" if code else message))
        _log.warning(
            "the API refused op=%s (HTTP %d %s); sending op=%s for the rest of the job",
            refused,
            status,
            words,
            self._op,
        )

    async def get_json(self, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:  # noqa: ANN401 - JSON
        """GET a JSON document at ``path`` below the base URL (``/runs``, ``/runs/{id}``)."""
        url = yarl.URL.build(
            scheme=self._scheme, authority=self._authority, path=self._path + path, encoded=True
        )
        status, body, headers = await self._request("GET", url, params, PAGE_CAP)
        if not 200 <= status < 300:
            raise self._api_error(status, body, headers)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise APIError(status, None, "answer is not JSON") from None

    async def _request(
        self, method: str, url: yarl.URL, params: Sequence[tuple[str, str]], cap: int
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """Send with the current token; a refused one is dropped.

        Answers are read whole, up to ``cap`` bytes; aiohttp's exceptions become ours.
        """
        token = await self._tokens.token()
        try:
            async with self._session.request(
                method,
                url,
                params=params or None,
                headers=self._with_token(token),
                allow_redirects=False,
            ) as response:
                status, body, headers = (
                    response.status,
                    await read_capped(response, cap),
                    response.headers,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from exc
        if status == 401 and self._tokens.refreshable:
            # Drop the refused token; a new one is fetched (single-flight) only if the caller
            # sends again, through the rate limit, as an attempt of its own.
            self._tokens.forget(token)
        return status, body, headers

    def _action_url(self, run_id: str, op: str) -> yarl.URL:
        # Run IDs are validated to [A-Za-z0-9_-], so the URL is built pre-encoded: no parsing.
        return yarl.URL.build(
            scheme=self._scheme,
            authority=self._authority,
            path=f"{self._path}/runs/{run_id}/action",
            query_string=f"op={op}",
            encoded=True,
        )

    def _api_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> APIError:
        code, message = error_words(status, body)
        hint = HINTS.get(code or "")
        # Masked, then cut: a cut could split a secret and let its first half through.
        shown = excerpt(self._scrub(message))
        return APIError(
            status,
            code if code is None else excerpt(self._scrub(code)),
            f"{shown} ({hint})" if hint else shown,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )

    def _scrub(self, text: str) -> str:
        """API text may echo what we sent: mask our secrets before the text goes anywhere."""
        return scrub(text, self._tokens.secrets())

    def _with_token(self, token: str) -> CIMultiDict[str]:
        if self._authorized[0] != token:  # built once per token, not per request
            self._authorized = (
                token,
                CIMultiDict({**self._headers, "Authorization": f"Bearer {token}"}),
            )
        return self._authorized[1]


def _etag(answer: dict[str, Any]) -> str | None:
    """The tutorial's answer is {id, etag}; the OpenAPI file's, a whole run with ``eTag``."""
    etag = answer.get("etag")
    if isinstance(etag, str):
        return etag
    etag = answer.get("eTag")
    return etag if isinstance(etag, str) else None


def _transport_error(exc: BaseException) -> TransportError:
    """The one place aiohttp's exceptions become ours."""
    name = exc.__class__.__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ConnectError(f"cannot connect: {name}: {exc}")
    if isinstance(exc, TimeoutError):
        return ConnectionLostError("timed out waiting for the answer")
    return ConnectionLostError(f"connection lost after sending: {name}")


def make_tokens(
    session: aiohttp.ClientSession, api: ApiSettings, *, attempts: int, backoff: Backoff
) -> TokenSource:
    """The token source the configuration asks for."""
    if isinstance(api.credentials, ClientCredentials):
        return ImsTokens(session, api.credentials, attempts=attempts, backoff=backoff)
    return StaticToken(api.credentials)


def _connect_timeout(request_timeout: float) -> float:
    """Seconds to connect: well before the request's deadline, however busy the event loop.

    A loop that runs both timers late must still see the connect one first: a connect
    that timed out was never sent (safe to retry), a request that timed out may have been.
    """
    share, most = _CONNECT_MARGIN
    return min(max(request_timeout * share, request_timeout - most), _CONNECT_TIMEOUT_MAX)


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
        connect=_connect_timeout(request_timeout),
    )
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=client_timeout,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies
    ) as session:
        yield session
