"""Adobe IMS ``/ims/token/v3``: OAuth Server-to-Server tokens that really expire."""

from __future__ import annotations

import math
import secrets
import time
from typing import TYPE_CHECKING, Final, Protocol

from aiohttp import web

from bulkretry.emulator.fault_answers import oversized_fault
from bulkretry.emulator.faults import OVERSIZED
from bulkretry.emulator.model import Emulated
from bulkretry.emulator.replies import drop, json_reply

if TYPE_CHECKING:
    from collections.abc import Mapping

IMS_PATH: Final = "/ims/token/v3"


class TokenStore:
    """Which bearer tokens the gateway accepts: the static ones and unexpired issued ones."""

    def __init__(self, static: frozenset[str], clients: Mapping[str, str], lifetime: float) -> None:
        self._static = static
        self._clients = dict(clients)
        self._lifetime = lifetime
        self._expiry: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"TokenStore(clients={sorted(self._clients)}, issued={len(self._expiry)})"

    def check_client(self, client_id: str, client_secret: str) -> str | None:
        """Why IMS refuses these credentials, or None; never echoes the secret."""
        expected = self._clients.get(client_id)
        if expected is None:
            return "invalid client_id parameter"
        if not secrets.compare_digest(expected.encode(), client_secret.encode()):
            return "invalid client_secret parameter"
        return None

    def issue(self) -> tuple[str, int]:
        """Mint a token; ``expires_in`` is whole seconds, at least 1, as IMS announces it."""
        token = secrets.token_urlsafe(32)
        self._expiry[token] = time.monotonic() + self._lifetime
        return token, max(1, math.ceil(self._lifetime))

    def valid(self, token: str) -> bool:
        """Accept static tokens always, issued ones until they expire."""
        if token in self._static:
            return True
        expiry = self._expiry.get(token)
        return expiry is not None and time.monotonic() < expiry


def _oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    return json_reply({"error": error, "error_description": description}, status)


class Issuer(Emulated, Protocol):
    """What the IMS route uses of the emulator."""

    tokens: TokenStore


async def _misbehave(request: web.Request, emu: Issuer, fault: str) -> web.StreamResponse | None:
    """The answer a scripted or drawn IMS fault gives, or None to behave."""
    if fault == "drop_before":
        return drop(request)
    if fault == "throttle":
        response = _oauth_error("temporarily_unavailable", "Too many requests", 429)
        if emu.faults.retry_after is not None:
            response.headers["Retry-After"] = str(emu.faults.retry_after)
        return response
    if fault == "unavailable":
        return _oauth_error("temporarily_unavailable", "Service is unavailable", 503)
    if fault in OVERSIZED:
        return await oversized_fault(request, emu.faults, fault)
    if fault == "echo_secret":  # a careless server: the form as sent, and a piece of the secret
        secret = str((await request.post()).get("client_secret", ""))
        described = f"cannot parse {await request.text()}; client_secret starts {secret[:12]}"
        return _oauth_error("invalid_request", described)
    return None


def make_token_handler(emu: Issuer) -> web.RouteDef:
    """Build the IMS route, closed over the emulator it issues tokens for."""

    async def token(request: web.Request) -> web.StreamResponse:
        emu.stats.token_requests += 1
        emu.stats.token_content_types.append(request.content_type)
        form = await request.post()
        params = {**request.query, **{k: v for k, v in form.items() if isinstance(v, str)}}
        emu.stats.token_scopes.append(params.get("scope", ""))
        misbehaviour = await _misbehave(request, emu, emu.plan.ims_fault(emu.faults))
        if misbehaviour is not None:
            return misbehaviour
        if params.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "unsupported grant_type parameter")
        refusal = emu.tokens.check_client(
            params.get("client_id", ""), params.get("client_secret", "")
        )
        if refusal is not None:
            return _oauth_error("invalid_client", refusal)
        access_token, expires_in = emu.tokens.issue()
        return json_reply(
            {"access_token": access_token, "token_type": "bearer", "expires_in": expires_in}
        )

    return web.post(IMS_PATH, token)
