from __future__ import annotations

from typing import Final, Protocol

import aiohttp
import anyio
import orjson

from .config import ClientCredentials, Secret
from .errors import AuthError
from .retrying import Backoff, parse_retry_after

_MARGIN_MAX: Final = 300.0


class TokenSource(Protocol):
    @property
    def refreshable(self) -> bool:
        """x"""

    async def token(self) -> str:
        """x"""

    async def refresh(self, stale: str) -> str:
        """x"""

    def secrets(self) -> tuple[str, ...]:
        """x"""


class StaticToken:
    refreshable = False

    def __init__(self, token: Secret) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token.reveal()

    async def refresh(self, stale: str) -> str:
        return self._token.reveal()

    def secrets(self) -> tuple[str, ...]:
        return (self._token.reveal(),)

    def __repr__(self) -> str:
        return "StaticToken(***)"


class ImsTokens:
    refreshable = True

    def __init__(self, session, credentials, *, attempts=5, backoff=None) -> None:
        self._session = session
        self._credentials = credentials
        self._attempts = attempts
        self._backoff = backoff or Backoff()
        self._lock = anyio.Lock()
        self._token = None
        self._refresh_at = 0.0
        self._issued = []

    async def token(self) -> str:
        token = self._token
        if token is None or anyio.current_time() >= self._refresh_at:
            async with self._lock:
                if self._token is token:
                    await self._fetch()
                token = self._token
        assert token is not None
        return token.reveal()

    async def refresh(self, stale: str) -> str:
        async with self._lock:
            if self._token is None or self._token.reveal() == stale:
                await self._fetch()
            assert self._token is not None
            return self._token.reveal()

    def secrets(self):
        return (self._credentials.client_secret.reveal(), *self._issued)

    async def _fetch(self) -> None:
        error = "no answer"
        for attempt in range(1, self._attempts + 1):
            retry_after = None
            try:
                async with self._session.post(
                    self._credentials.ims_url, data=self._form(), allow_redirects=False
                ) as response:
                    body = await response.read()
                    status = response.status
                    retry_after_header = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{exc.__class__.__name__}"
            else:
                if status == 200:
                    self._accept(body)
                    return
                error = f"HTTP {status}: {_ims_error(body)}"
                if 400 <= status < 500 and status != 429:
                    raise AuthError(
                        f"IMS refused the credentials ({error}): check AEP_CLIENT_ID, "
                        "AEP_CLIENT_SECRET and AEP_SCOPES in the Developer Console"
                    )
                retry_after = parse_retry_after(retry_after_header)
            if attempt < self._attempts:
                await anyio.sleep(self._backoff.delay(attempt, retry_after))
        raise AuthError(f"cannot get a token from IMS at {self._credentials.ims_url}: {error}")

    def _form(self):
        return {
            "grant_type": "client_credentials",
            "client_id": self._credentials.client_id,
            "client_secret": self._credentials.client_secret.reveal(),
            "scope": self._credentials.scopes,
        }

    def _accept(self, body: bytes) -> None:
        try:
            answer = orjson.loads(body)
            token, lifetime = answer["access_token"], float(answer["expires_in"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise AuthError("IMS answered 200 without access_token and expires_in") from None
        if not isinstance(token, str) or not token:
            raise AuthError("IMS answered 200 without a usable access_token")
        self._issued.append(token)
        self._token = Secret(token)
        self._refresh_at = anyio.current_time() + lifetime - min(_MARGIN_MAX, lifetime / 10)

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
