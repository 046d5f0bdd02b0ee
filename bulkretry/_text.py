"""Text that crosses a trust boundary: secrets that must never show, and untrusted text to show.

Kept apart from settings and input parsing because every layer needs it: the client
masks API answers, the report masks rendered lines, the parser shows bad input.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

REDACTED: Final = "[REDACTED]"
EXCERPT: Final = 200
"""Characters of untrusted text shown in a line (an invalid run ID, an API answer)."""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every (non-empty) secret in it replaced by ``REDACTED``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
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
