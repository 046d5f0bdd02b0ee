from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bulkretry.emulator import Emulator, Faults, serve

from .support import HEADERS, retrigger

pytestmark = pytest.mark.anyio

GOOD_FORM = {
    "grant_type": "client_credentials",
    "client_id": "test-client-id",
    "client_secret": "test-client-secret",
    "scope": "openid,AdobeID",
}


async def fetch_token(session, server, **overrides):
    """POST the token form and return status and JSON body."""
    async with session.post(server.ims_url, data={**GOOD_FORM, **overrides}) as response:
        return response.status, await response.json()


def bearer(token: str) -> dict[str, str]:
    """Headers carrying an issued token."""
    return {**HEADERS, "Authorization": f"Bearer {token}"}


async def test_issued_token_is_accepted(emu, server, session):
    """Good credentials get a distinct bearer token that Flow Service accepts."""
    status, body = await fetch_token(session, server)
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86400
    assert (await fetch_token(session, server))[1]["access_token"] != body["access_token"]
    headers = bearer(body["access_token"])
    assert (await retrigger(session, server, "failed-1", headers=headers))[0] == 200
    assert emu.stats.token_requests == 2
    assert emu.stats.token_scopes == ["openid,AdobeID"] * 2
    assert not any(r.path.startswith("/ims") for r in emu.stats.requests)


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"client_secret": "wrong-secret"}, "invalid client_secret parameter"),
        ({"client_id": "someone-else"}, "invalid client_id parameter"),
    ],
)
async def test_wrong_credentials_are_invalid_client(emu, server, session, overrides, description):
    """A wrong client or secret is a 400 invalid_client that never echoes the secret."""
    status, body = await fetch_token(session, server, **overrides)
    assert (status, body) == (400, {"error": "invalid_client", "error_description": description})
    assert "wrong-secret" not in str(body)
    assert emu.stats.token_requests == 1


async def test_bad_grant_type(server, session):
    """A grant type other than client_credentials is unsupported_grant_type."""
    status, body = await fetch_token(session, server, grant_type="password")
    assert (status, body["error"]) == (400, "unsupported_grant_type")


async def test_expired_token_gets_401013(session):
    """An issued token stops working at its expiry; expires_in rounds up to whole seconds."""
    emu = Emulator(token_lifetime=0.3, auto_create=True)
    async with serve(emu) as server:
        status, body = await fetch_token(session, server)
        assert (status, body["expires_in"]) == (200, 1)
        headers = bearer(body["access_token"])
        assert (await retrigger(session, server, "r1", headers=headers))[0] == 200
        await asyncio.sleep(0.35)
        status, _, raw = await retrigger(session, server, "r2", headers=headers)
        assert (status, b"401013" in raw) == (401, True)
        assert emu.stats.retriggers == {"r1": 1}


async def test_ims_script_then_ok(emu, server, session):
    """The ims_script plays its faults in order, then IMS answers normally."""
    emu.faults = Faults(ims_script=["unavailable", "throttle", "ok"])
    assert (await fetch_token(session, server))[0] == 503
    async with session.post(server.ims_url, data=GOOD_FORM) as response:
        assert (response.status, response.headers["Retry-After"]) == (429, "1")
    assert (await fetch_token(session, server))[0] == 200
    assert emu.stats.token_requests == 3


async def test_ims_drop(emu, server):
    """An IMS drop_before closes the connection with no answer."""
    emu.faults = Faults(ims_script=["drop_before"])
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await fetch_token(session, server)


async def test_ims_unavailable_probability(emu, server, session):
    """ims_unavailable=1 makes every token request a 503."""
    emu.faults = Faults(ims_unavailable=1.0)
    assert (await fetch_token(session, server))[0] == 503
