"""Where the recovery history lives, with a PostgreSQL password kept out of sight."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ._errors import UsageError
from ._text import Secret, scrub


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

    def failure(self, text: str) -> str:
        """The one line that says the history failed: its name, then ``text`` redacted."""
        return f"history {self}: {self.redact(text)}"


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
_DELIMITERS = re.compile(r"[@:/?#]")
_SHORTEST = 2
"""A single character masked in a driver's message would mangle it and hide nothing."""


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
    # A driver that splits at another '@' quotes the rest of the password as a "host":
    # its pieces between URL delimiters are masked in driver messages too.
    found += [piece for password in found for piece in _DELIMITERS.split(password)]
    return tuple(dict.fromkeys(password for password in found if len(password) >= _SHORTEST))


def mask_url(url: str) -> str:
    """``url`` with its password (and any ``password=`` parameter) replaced by ``***``.

    The userinfo runs to the last ``@``, as in ``url_passwords``: a password with an
    unencoded ``/``, ``?`` or ``#`` would otherwise end the host early and show in the path.
    """
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError for what does not parse
    except ValueError:
        return "(a URL that does not parse; not shown)"
    scheme, separator, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    return scheme + separator + re.sub(r"(?i)(password=)[^&#\s]*", r"\1***", rest)
