"""Bearer tokens: a static one, or OAuth Server-to-Server tokens fetched from IMS.

Every worker asks the same provider; a lock makes refreshes single-flight, so 32
workers meeting an expired token cause one IMS request, not 32, and a failed fetch is
shared by everyone who was waiting for it rather than repeated by each of them.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

import aiohttp
import anyio
import orjson

from ._api_settings import ClientCredentials
from ._attempts import Attempts, GaveUp, Policy
from ._backoff import Backoff, parse_retry_after
from ._body import ANSWER_CAP, read_capped
from ._errors import APIError, AuthError, ConnectError
from ._settings import DEFAULT_MAX_ATTEMPTS
from ._text import Secret, scrub

_USUAL_LIFETIME: Final = 86400.0
_MARGIN_MAX: Final = 300.0
"""Refresh at most this many seconds before expiry (10 % of the lifetime when shorter)."""
_RETRY_LATER: Final = 5.0
"""After a failed early refresh, keep using the still-valid token this long, then try again."""


class TokenSource(Protocol):
    """What the Flow Service client needs from authentication."""

    @property
    def refreshable(self) -> bool:
        """Whether a 401 can be cured by asking for a new token."""

    async def token(self) -> str:
        """A token that is valid now."""

    def forget(self, stale: str) -> None:
        """Drop ``stale`` after a 401, so that the next ``token()`` is a new one."""

    def secrets(self) -> tuple[str, ...]:
        """Every secret value this source knows, for output redaction."""


class StaticToken:
    """A ready token from ``AEP_ACCESS_TOKEN``: never refreshed."""

    refreshable = False

    def __init__(self, token: Secret) -> None:
        self._token = token

    async def token(self) -> str:
        """The token, as given."""
        return self._token.reveal()

    def forget(self, stale: str) -> None:
        """A static token cannot be replaced: nothing to forget."""

    def secrets(self) -> tuple[str, ...]:
        """The token itself."""
        return (self._token.reveal(),)

    def __repr__(self) -> str:
        return "StaticToken(***)"


class ImsTokens:
    """Client-credentials tokens from IMS, fetched once, refreshed before expiry and on a 401.

    Lifetimes are measured from when the token request was *sent*, so the client never
    believes a token lives longer than IMS does. Inside the refresh margin one task
    refreshes while the others keep using the still-valid token; if that refresh fails,
    the old token serves until it really expires.
    """

    refreshable = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credentials: ClientCredentials,
        *,
        attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff: Backoff | None = None,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._policy = Policy(limit=attempts, retry_uncertain=True, backoff=backoff or Backoff())
        self._lock = anyio.Lock()
        self._token: Secret | None = None
        self._refresh_at = -math.inf
        self._expires_at = -math.inf
        self._fetches = 0  # finished fetches, successful or not: who is waiting for which
        self._failure: str | None = None  # why the last fetch failed, shared with its waiters
        self._issued: list[str] = []

    async def token(self) -> str:
        """The current token; refreshed first when it is due, without a stampede."""
        current = self._token
        now = anyio.current_time()
        if current is not None and (
            now < self._refresh_at or (self._lock.locked() and now < self._expires_at)
        ):
            return current.reveal()  # fresh, or still valid while another task refreshes it
        return await self._renew(current, self._fetches)

    def forget(self, stale: str) -> None:
        """A 401 refused ``stale``: never hand it out again; the next ``token()`` fetches.

        Nothing is fetched here, so a refusal that will not be retried costs no IMS call.
        """
        current = self._token
        if current is not None and current.reveal() == stale:
            self._refresh_at = self._expires_at = -math.inf

    def secrets(self) -> tuple[str, ...]:
        """The client secret and every token issued so far."""
        return (self._credentials.client_secret.reveal(), *self._issued)

    async def _renew(self, seen: Secret | None, fetches: int) -> str:
        """Under the lock: fetch unless someone did since ``fetches``; share the result."""
        async with self._lock:
            if self._fetches == fetches:  # nobody has tried since this task looked
                await self._fetch()
            token = self._token
            if token is not None and (token is not seen or anyio.current_time() < self._expires_at):
                return token.reveal()
            raise AuthError(self._failure or "no token from IMS")

    async def _fetch(self) -> None:
        """One fetch, with its retries; records the token or why there is none."""
        sent = anyio.current_time()
        try:
            token, lifetime = await self._request_token()
        except AuthError as exc:
            self._failure = str(exc)
            if self._token is not None:  # a still-valid token serves a little longer
                self._refresh_at = min(anyio.current_time() + _RETRY_LATER, self._expires_at)
        else:
            self._failure = None
            self._issued.append(token)
            self._token = Secret(token)
            self._expires_at = sent + lifetime
            self._refresh_at = self._expires_at - min(_MARGIN_MAX, lifetime / 10)
        # Not in a ``finally``: a cancelled fetch settled nothing, so a waiter fetches itself.
        self._fetches += 1

    async def _request_token(self) -> tuple[str, float]:
        """POST the client-credentials form through the attempt loop.

        A token request is safe to repeat, so 5xx answers and lost connections are retried
        too (``retry_uncertain``); a refusal or a redirect ends it at once.
        """
        try:
            return await Attempts(self._policy).run(self._post_form)
        except GaveUp as end:
            if end.failure is not None and isinstance(end.failure.error, AuthError):
                raise end.failure.error from None
            url = self._credentials.ims_url
            raise AuthError(f"cannot get a token from IMS at {url}: {end}") from None

    async def _post_form(self) -> tuple[str, float]:
        """One token request: the token, or the error the attempt loop judges."""
        try:
            async with self._session.post(
                self._credentials.ims_url, data=self._form(), allow_redirects=False
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                body = await read_capped(response, ANSWER_CAP)  # over it: asked again
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Which of the two does not matter here: a token request is repeated either way.
            raise ConnectError(
                self._scrub(f"{exc.__class__.__name__}: {exc}".rstrip(": "))
            ) from exc
        if 200 <= status < 300:
            return self._accept(body)
        error = f"HTTP {status}: {self._scrub(_ims_error(body))}"
        if 400 <= status < 500 and status != 429:
            raise AuthError(
                f"IMS refused the credentials ({error}): check AEP_CLIENT_ID, "
                "AEP_CLIENT_SECRET and AEP_SCOPES in the Developer Console"
            )
        if status < 400:
            raise AuthError(
                f"IMS answered {error} (redirects are not followed): "
                "check --ims-url or AEP_IMS_TOKEN_URL"
            )
        raise APIError(status, None, error, retry_after=retry_after)

    def _form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self._credentials.client_id,
            "client_secret": self._credentials.client_secret.reveal(),
            "scope": self._credentials.scopes,
        }

    def _scrub(self, text: str) -> str:
        """Text from IMS or the network, with the client secret masked should it be echoed."""
        return scrub(text, (self._credentials.client_secret.reveal(),))

    def _accept(self, body: bytes) -> tuple[str, float]:
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise AuthError("IMS answered 200 without JSON") from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError("IMS answered 200 without a usable access_token")
        # Adobe documents expires_in; without it, assume its usual day (a 401 refreshes anyway).
        raw = answer.get("expires_in", _USUAL_LIFETIME)
        try:
            lifetime = float(raw)
        except (TypeError, ValueError):
            raise AuthError("IMS answered a token without a usable expires_in") from None
        if not math.isfinite(lifetime) or lifetime <= 0:
            raise AuthError(f"IMS answered a token that is already expired (expires_in={lifetime})")
        return token, lifetime

    def __repr__(self) -> str:
        return f"ImsTokens(client_id={self._credentials.client_id!r}, token=***)"


def _ims_error(body: bytes) -> str:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "no JSON error body"
    if isinstance(answer, dict) and "error" in answer:
        return f"{answer['error']}: {answer.get('error_description', '')}".rstrip(": ")
    return "unrecognised error body"
