"""Text that crosses a trust boundary: secrets that must never show, and untrusted text to show.

Kept apart from settings and input parsing because every layer needs it: the client
masks API answers, the report masks rendered lines, the parser shows bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
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
    forms = _forms(tuple(secrets))
    if forms.absent_from(text):
        return text  # the common case: every answer is scrubbed, the re-trigger's twice
    return _mask(text, forms)


def _mask(text: str, forms: _Forms) -> str:
    """Every whole form and every run of pieces masked at once: the scan ``scrub`` mostly skips.

    The spans are found on the text as it came and merged before any is replaced, so one
    form's mask never cuts another's echo short.
    """
    spans = [
        (at, at + len(form))
        for form in forms.short
        for at in range(len(text))
        if text.startswith(form, at)
    ]
    pieces = forms.pieces
    spans += [
        (at, at + FRAGMENT)
        for at in range(len(text) - FRAGMENT + 1)
        if text[at : at + FRAGMENT] in pieces
    ]
    merged: list[list[int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    for begin, end in reversed(merged):
        text = text[:begin] + REDACTED + text[end:]
    return text


_QUAD: Final = FRAGMENT // 2
_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")


@dataclass(frozen=True, slots=True)
class _Forms:
    """Every form of a set of secrets, and a quick test that none can be in a text.

    Any run of ``FRAGMENT`` characters shared with a form holds a ``FRAGMENT // 2``-character
    piece of it starting at a multiple of ``FRAGMENT // 2`` in the text: so one look at
    those few slices clears a text that holds nothing of a secret.
    """

    pieces: frozenset[str]  # every FRAGMENT characters in a row of every form
    short: tuple[str, ...]  # forms shorter than FRAGMENT: only whole ones count
    quads: frozenset[str]

    def absent_from(self, text: str) -> bool:
        if any(form in text for form in self.short):
            return False
        ends = range(0, len(text) - _QUAD + 1, _QUAD)
        return self.quads.isdisjoint([text[i : i + _QUAD] for i in ends])


@lru_cache(maxsize=32)
def _forms(secrets: tuple[str, ...]) -> _Forms:
    """The secrets as sent (header, JSON) and URL-encoded (either case of hex), with pieces.

    Worked out once per set of secrets (a token refresh makes a new set).
    """
    encoded = {form for s in secrets if s for form in (quote(s, safe=""), quote_plus(s))}
    lower = {_ESCAPE.sub(lambda m: m[0].lower(), form) for form in encoded}  # %2f as well
    forms = {s for s in secrets if s} | encoded | lower
    return _Forms(
        pieces=frozenset(
            form[i : i + FRAGMENT] for form in forms for i in range(len(form) - FRAGMENT + 1)
        ),
        short=tuple(form for form in forms if len(form) < FRAGMENT),
        quads=frozenset(
            form[i : i + _QUAD] for form in forms for i in range(len(form) - _QUAD + 1)
        ),
    )


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
