"""API settings, resolved once: where Flow Service and IMS are, and as whom to call them.

Flag > environment > default. A URL, a credential or a variable given wrong is refused
here with exit 2 and one line saying what to set, before any request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ._errors import UsageError
from ._text import Secret

DEFAULT_BASE_URL: Final = "https://platform.adobe.io/data/foundation/flowservice"
DEFAULT_IMS_URL: Final = "https://ims-na1.adobelogin.com/ims/token/v3"
DEFAULT_SCOPES: Final = (
    "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
)
DEFAULT_SANDBOX: Final = "prod"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCredentials:
    """OAuth Server-to-Server credentials: tokens are fetched from IMS and refreshed."""

    client_id: str
    client_secret: Secret
    scopes: str
    ims_url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """Where and as whom to call Flow Service."""

    base_url: str
    api_key: str
    org_id: str
    sandbox: str
    credentials: ClientCredentials | Secret
    warnings: tuple[str, ...] = ()


def load_api_settings(
    env: Mapping[str, str],
    *,
    base_url: str | None = None,
    ims_url: str | None = None,
    org: str | None = None,
    sandbox: str | None = None,
) -> ApiSettings:
    """Resolve the API configuration, or raise ``UsageError`` saying what to set."""
    env = {name: _clean(name, env[name]) for name in _VARIABLES if name in env}
    base_url, ims_url, org, sandbox = (
        _clean(flag, value) if value is not None else None
        for flag, value in (
            ("--base-url", base_url),
            ("--ims-url", ims_url),
            ("--org", org),
            ("--sandbox", sandbox),
        )
    )
    base = check_url(base_url or env.get("AEP_FLOW_SERVICE_URL") or DEFAULT_BASE_URL, "--base-url")
    org_id = org or env.get("AEP_ORG_ID")
    if not org_id:
        raise UsageError("no IMS org: set AEP_ORG_ID or pass --org (e.g. 1234ABCD@AdobeOrg)")
    warnings: list[str] = []
    credentials = _credentials(env, ims_url, warnings)
    api_key = env.get("AEP_API_KEY") or env.get("AEP_CLIENT_ID")  # the contract's default
    if not api_key:
        raise UsageError(
            "no API key: set AEP_API_KEY or AEP_CLIENT_ID (the Developer Console's client ID)"
        )
    return ApiSettings(
        base_url=base,
        api_key=api_key,
        org_id=org_id,
        sandbox=sandbox or env.get("AEP_SANDBOX_NAME") or DEFAULT_SANDBOX,
        credentials=credentials,
        warnings=tuple(warnings),
    )


def _credentials(
    env: Mapping[str, str], ims_url: str | None, warnings: list[str]
) -> ClientCredentials | Secret:
    client_id = env.get("AEP_CLIENT_ID")
    secret = _client_secret(env)
    token = env.get("AEP_ACCESS_TOKEN")
    if client_id and secret:
        if token:
            warnings.append("AEP_ACCESS_TOKEN is ignored: client credentials are set and win")
        url = check_url(ims_url or env.get("AEP_IMS_TOKEN_URL") or DEFAULT_IMS_URL, "--ims-url")
        scopes = env.get("AEP_SCOPES") or DEFAULT_SCOPES
        return ClientCredentials(
            client_id=client_id, client_secret=Secret(secret), scopes=scopes, ims_url=url
        )
    if secret and not client_id:
        raise UsageError(
            "a client secret is set (AEP_CLIENT_SECRET or AEP_CLIENT_SECRET_FILE) "
            "but AEP_CLIENT_ID is not: set both"
        )
    if client_id and not token:
        raise UsageError(
            "AEP_CLIENT_ID is set but no secret: set AEP_CLIENT_SECRET or AEP_CLIENT_SECRET_FILE"
        )
    if not token:
        raise UsageError(
            "no credentials: set AEP_CLIENT_ID and AEP_CLIENT_SECRET (OAuth Server-to-Server) "
            "or AEP_ACCESS_TOKEN"
        )
    return Secret(token)


_VARIABLES: Final = (
    "AEP_FLOW_SERVICE_URL",
    "AEP_ACCESS_TOKEN",
    "AEP_CLIENT_ID",
    "AEP_CLIENT_SECRET",
    "AEP_CLIENT_SECRET_FILE",
    "AEP_SCOPES",
    "AEP_IMS_TOKEN_URL",
    "AEP_API_KEY",
    "AEP_ORG_ID",
    "AEP_SANDBOX_NAME",
)
"""The environment bulkretry reads; others (an old AEP_PRIVATE_KEY, say) are left alone."""


def _clean(name: str, value: str) -> str:
    """Trim a value (env files and mounted secrets often end in a newline).

    Control characters are refused: they would otherwise end up inside an HTTP header.
    """
    value = value.strip()
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise UsageError(f"{name} contains a control character (a stray line break?)")
    return value


def _client_secret(env: Mapping[str, str]) -> str | None:
    secret, path = env.get("AEP_CLIENT_SECRET"), env.get("AEP_CLIENT_SECRET_FILE")
    if secret and path:
        raise UsageError("set AEP_CLIENT_SECRET or AEP_CLIENT_SECRET_FILE, not both")
    if not path:
        return secret or None
    try:
        value = _clean("AEP_CLIENT_SECRET_FILE", Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.__class__.__name__
        raise UsageError(f"cannot read AEP_CLIENT_SECRET_FILE {path}: {reason}") from None
    if not value:
        raise UsageError(f"AEP_CLIENT_SECRET_FILE {path} is empty")
    return value


def check_url(url: str, flag: str) -> str:
    """Accept ``https://`` anywhere and ``http://`` only on loopback; keep the path as given.

    A URL with ``user:password@`` is refused and never echoed: the password would reach
    stderr, and aiohttp would send it as Basic auth.
    """
    shown = "(not shown: it may carry a password)" if "@" in url else repr(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise UsageError(f"{flag}: not a valid URL: {shown}") from None
    if "@" in parts.netloc:
        raise UsageError(f"{flag}: must not carry user:password@; use the AEP_* variables")
    if parts.scheme not in {"http", "https"} or not host:
        raise UsageError(f"{flag}: expected an http(s) URL with a host, got {shown}")
    if parts.scheme == "http" and not is_loopback(host):
        raise UsageError(
            f"{flag}: plain http is only allowed for loopback hosts; use https://{parts.netloc}"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"{flag}: must not carry a query or fragment: {shown}")
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
