"""Pure retry policy: what an answer means, whether to try again, and how long to wait.

Only answers that prove the re-trigger was *not* applied are retried (429, 503, failure
to connect). Everything else is final, because a second re-trigger starts a second
ingestion. The rules are the contract's table, in one place; the job-wide slow-down
after 429s lives with the other admission meters, in ``admission.py``.
"""

from __future__ import annotations

import enum
import random
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Final

from ._errors import APIError, BulkRetryError, ConnectError, ConnectionLostError

_SAFE_STATUSES: Final = frozenset({429, 503})
MAX_RETRY_AFTER: Final = 300.0
"""A longer Retry-After ends the run's retries (it stays not applied) instead of parking a
worker for hours; honouring it means never sending sooner, and we send never."""
_SECONDS: Final = re.compile(r"\d+(\.\d+)?")


class Verdict(enum.Enum):
    """What to do after a failed attempt."""

    RETRY = "retry"  # certainly not applied: try again after a backoff
    REAUTH = "reauth"  # 401 with a refreshable token: refresh once, send again
    UNCERTAIN = "uncertain"  # may have been applied: report, do not resend
    FAILED = "failed"  # certainly not applied and will not be: report


def classify(error: BulkRetryError, *, refreshable: bool) -> Verdict:
    """Map one attempt's error to a verdict, per the contract's table."""
    if isinstance(error, ConnectError):
        return Verdict.RETRY
    if isinstance(error, ConnectionLostError):
        return Verdict.UNCERTAIN
    if isinstance(error, APIError):
        status = error.status
        if status in _SAFE_STATUSES:
            return Verdict.RETRY
        if status == 401 and refreshable:
            return Verdict.REAUTH
        if 200 <= status < 300 or status >= 500:
            return Verdict.UNCERTAIN
    return Verdict.FAILED


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)  # delta-seconds; a fraction is not in RFC 9110, but is meant
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, floored by ``Retry-After``.

    ``base=0`` gives zero waits (apart from ``Retry-After``): tests use that rather than
    patching sleeps.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before attempt ``attempt + 1``, after ``attempt`` attempts (1-based) failed."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        jittered = self.rng.uniform(0, ceiling) if ceiling > 0 else 0.0
        return max(jittered, retry_after or 0.0)


class Step(enum.Enum):
    """What follows a failed attempt."""

    AGAIN_NOW = "again-now"  # a 401 whose token was just renewed: send once more at once
    AGAIN_LATER = "again-later"  # not applied (or --retry-uncertain): after a backoff
    STOP = "stop"  # the outcome is final


@dataclass(slots=True)
class Attempts:
    """One unit of work's attempts: after each error, whether and when to try again.

    Shared by re-triggers and listing pages, so both follow the contract's table alike.
    """

    limit: int
    refreshable: bool
    retry_uncertain: bool = False
    made: int = 0
    reauthorized: bool = False
    uncertain: bool = False  # some attempt may have been applied: the end can never be "failed"

    def after(self, error: BulkRetryError) -> tuple[Verdict, Step, float]:
        """The verdict on ``error``, the next step, and the least wait before it."""
        verdict = classify(error, refreshable=self.refreshable and not self.reauthorized)
        if verdict is Verdict.REAUTH:
            self.reauthorized = True
            if self.made >= self.limit:
                return Verdict.FAILED, Step.STOP, 0.0
            return verdict, Step.AGAIN_NOW, 0.0
        if verdict is Verdict.UNCERTAIN:
            self.uncertain = True
        retry_after = error.retry_after if isinstance(error, APIError) else None
        again = verdict is Verdict.RETRY or (verdict is Verdict.UNCERTAIN and self.retry_uncertain)
        if not again or self.made >= self.limit or (retry_after or 0.0) > MAX_RETRY_AFTER:
            return verdict, Step.STOP, 0.0
        return verdict, Step.AGAIN_LATER, retry_after or 0.0
