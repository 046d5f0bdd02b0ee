"""Frozen settings, resolved once: flag > environment > default.

Everything a user can get wrong is checked here, before any request, so that a
misconfigured nightly job fails with exit 2 and one clear line instead of
half-running.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

from ._errors import UsageError
from ._text import Secret, scrub

DEFAULT_BASE_URL: Final = "https://platform.adobe.io/data/foundation/flowservice"
DEFAULT_IMS_URL: Final = "https://ims-na1.adobelogin.com/ims/token/v3"
DEFAULT_SCOPES: Final = (
    "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
)
DEFAULT_SANDBOX: Final = "prod"
DEFAULT_RATE: Final = 10.0
DEFAULT_CONCURRENCY: Final = 10
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_GENERATIONS: Final = 3


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


@dataclass(frozen=True, slots=True)
class HistoryLocation:
    """Where the recovery history lives: a SQLite file, or a PostgreSQL URL kept secret."""

    path: Path | None = None
    url: Secret | None = None

    def __str__(self) -> str:
        if self.url is None:
            return str(self.path)
        return mask_url(self.url.reveal())

    def __repr__(self) -> str:
        return f"HistoryLocation({self})"

    def secrets(self) -> tuple[str, ...]:
        """Every password in the URL, to scrub driver messages; found even if it does not parse."""
        if self.url is None:
            return ()
        return url_passwords(self.url.reveal())

    def redact(self, text: str) -> str:
        """``text`` (a driver's message) with the URL and every password in it masked."""
        if self.url is None:
            return text
        text = _ANY_PG_URL.sub("(the URL, not shown)", text)  # a driver may quote it in part
        return scrub(text, self.secrets())


def history_location(value: str | None, env: Mapping[str, str]) -> HistoryLocation | None:
    """``--history`` > ``BULKRETRY_HISTORY`` > the XDG state file; None for ``off``.

    An empty value is refused rather than read as "the default": a script's unset variable
    (``--history "$H"``) must not write to a history nobody chose.
    """
    given, name = (
        (value, "--history")
        if value is not None
        else (env.get("BULKRETRY_HISTORY"), "BULKRETRY_HISTORY")
    )
    text = given.strip() if given is not None else ""
    if given is not None and not text:
        raise UsageError(f"{name} is empty: give a SQLite file path, a postgresql:// URL, or 'off'")
    if text == "off":
        return None
    if not text:
        state = env.get("XDG_STATE_HOME", "")
        root = Path(state) if Path(state).is_absolute() else Path.home() / ".local" / "state"
        return HistoryLocation(path=root / "bulkretry" / "history.sqlite3")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in {"postgresql", "postgres"}:
        return HistoryLocation(url=Secret(text))
    if scheme:
        raise UsageError(
            f"--history: expected a file path, a postgresql:// URL or 'off', got a {scheme}:// URL"
        )
    return HistoryLocation(path=Path(text).expanduser())


_ANY_PG_URL = re.compile(r"(?i)postgres(?:ql)?://[^\s\"']*")
_USERINFO = re.compile(r"(?s)^[^:]*://(?P<userinfo>.*)@")
_PARAM = re.compile(r"(?i)password=(?P<value>[^&#\s]*)")


def url_passwords(url: str) -> tuple[str, ...]:
    """Every password form in ``url``, without trusting it to parse.

    The userinfo is taken up to the last ``@`` (too much rather than too little: ``scrub``
    masks any 8 characters in a row of it too), and ``password=`` parameters are added.
    """
    found: list[str] = []
    if (userinfo := _USERINFO.match(url)) is not None and ":" in userinfo["userinfo"]:
        found.append(userinfo["userinfo"].split(":", 1)[1])
    found += [match["value"] for match in _PARAM.finditer(url)]
    found += [unquote(password) for password in found]
    return tuple(dict.fromkeys(password for password in found if password))


def mask_url(url: str) -> str:
    """``url`` with its password (and any ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a URL that does not parse; not shown)"
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rsplit('@', 1)[1]}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


@dataclass(frozen=True, slots=True)
class Bounds:
    """The values one numeric flag accepts: checked here for the CLI and the library alike.

    Absurd values are refused rather than obeyed: ``--concurrency 100000`` once took 800 MB
    for five run IDs, and ``--rate 1e300`` overflowed the rate limiter.
    """

    flag: str
    low: float
    high: float
    zero: bool = False
    """Whether 0 is allowed too, with its own meaning (``--rate 0``: no limit)."""

    def describe(self) -> str:
        """The allowed range, as a usage error says it."""
        span = f"{self.low:g} to {self.high:g}"
        return f"0 (no limit) or {span}" if self.zero else span

    def allows(self, value: float) -> bool:
        """Whether ``value`` is in range (NaN and infinities never are)."""
        return math.isfinite(value) and (
            self.low <= value <= self.high or (self.zero and value == 0)
        )

    def check(self, value: float) -> None:
        """Raise ``UsageError`` naming the flag and its range unless ``value`` is allowed."""
        if not self.allows(value):
            raise UsageError(f"{self.flag} must be {self.describe()}, got {value:g}")


RATE: Final = Bounds("--rate", 0.01, 10_000.0, zero=True)
CONCURRENCY: Final = Bounds("--concurrency", 1, 1000)
MAX_ATTEMPTS: Final = Bounds("--max-attempts", 1, 100)
TIMEOUT: Final = Bounds("--timeout", 0.001, 3600.0)


def check_pace(*, rate: float, max_attempts: int, timeout: float) -> None:
    """The bounds shared by every command that sends requests."""
    RATE.check(rate)
    MAX_ATTEMPTS.check(max_attempts)
    TIMEOUT.check(timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSettings:
    """How hard to push, and what to do when answers go wrong."""

    rate: float = DEFAULT_RATE
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float = DEFAULT_TIMEOUT
    journal: Path | None = None
    retry_uncertain: bool = False
    dry_run: bool = False
    history: HistoryLocation | None = None
    """The recovery history; None (``off``) runs without one. Off by default in the library."""
    again: bool = False
    max_generations: int = DEFAULT_MAX_GENERATIONS

    def __post_init__(self) -> None:
        check_pace(rate=self.rate, max_attempts=self.max_attempts, timeout=self.timeout)
        CONCURRENCY.check(self.concurrency)
        _check(self.max_generations >= 1, "--max-generations must be at least 1")


def _check(ok: bool, message: str) -> None:  # noqa: FBT001 - reads as a sentence
    if not ok:
        raise UsageError(message)


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
