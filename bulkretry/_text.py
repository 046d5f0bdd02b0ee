"""Text that crosses a trust boundary: secrets that must never show, and untrusted text to show.

Kept apart from settings and input parsing because every layer needs it: the client
masks API answers, the report masks rendered lines, the parser shows bad input.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Final
from urllib.parse import quote, quote_plus

REDACTED: Final = "[REDACTED]"
EXCERPT: Final = 200
"""Characters of untrusted text shown in a line (an invalid run ID, an API answer)."""


FRAGMENT: Final = 8
"""Characters of a secret in a row that count as an echo of it (a prefix cut short, say)."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret masked: whole, URL-encoded, or any 8 of its characters in a row.

    An answer may echo a secret partly (a prefix, the form body it was sent in), so every
    run of ``FRAGMENT`` or more characters shared with a secret is replaced by ``REDACTED``.
    Mask before cutting text short: a cut would otherwise leave a prefix unrecognised.
    """
    for secret in secrets:
        for form, pieces in _forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
            if pieces:
                text = _mask_fragments(text, pieces)
    return text


@lru_cache(maxsize=32)
def _forms(secret: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """The secret as sent (header, JSON) and URL-encoded, each with its 8-character pieces.

    Worked out once per secret: every answer is scrubbed, the re-trigger's twice.
    """
    if not secret:
        return ()
    forms = sorted({secret, quote(secret, safe=""), quote_plus(secret)}, key=len, reverse=True)
    return tuple(
        (form, frozenset(form[i : i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1)))
        for form in forms
    )


def _mask_fragments(text: str, pieces: frozenset[str]) -> str:
    """Replace every run of text made of ``FRAGMENT``-character ``pieces`` of a secret."""
    if pieces.isdisjoint({text[i : i + FRAGMENT] for i in range(len(text) - FRAGMENT + 1)}):
        return text  # the common case, found by one set operation
    spans: list[list[int]] = []
    for start in range(len(text) - FRAGMENT + 1):
        if text[start : start + FRAGMENT] in pieces:
            if spans and start <= spans[-1][1]:
                spans[-1][1] = start + FRAGMENT
            else:
                spans.append([start, start + FRAGMENT])
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


class Secret:
    """A string that never shows itself in a ``repr``, ``str`` or f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """Untrusted text made safe to show anywhere: printable ASCII, cut at ``limit`` characters.

    The default is long enough that an ID one character too long comes back whole.
    """
    shown = text[:limit]
    if not (shown.isascii() and shown.isprintable()):
        shown = ascii(shown)[1:-1]
    return shown + "..." if len(text) > limit else shown
