"""Frozen job settings, resolved once: flag > environment > default.

Everything a user can get wrong is checked here, before any request, so that a
misconfigured nightly job fails with exit 2 and one clear line instead of
half-running.

API settings (URLs, credentials) are in ``_api_settings``; where the history lives is in
``_history_location``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ._errors import UsageError
from ._history_location import HistoryLocation

DEFAULT_RATE: Final = 10.0
DEFAULT_CONCURRENCY: Final = 10
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_MAX_GENERATIONS: Final = 3


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
