"""How long to wait before the next attempt: exponential backoff with jitter, and ``Retry-After``.

Pure functions of the attempt number and the header: tests zero the waits with
``Backoff(base=0)`` instead of patching sleeps.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Final

MAX_RETRY_AFTER: Final = 300.0
"""A longer Retry-After ends the retries (the request stays not applied) instead of parking
a worker for hours; honouring it means never sending sooner, and we send never."""
_SECONDS: Final = re.compile(r"\d+(\.\d+)?")


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


_MAX_DOUBLINGS: Final = 64


@dataclass(frozen=True, slots=True, kw_only=True)
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
        # The exponent stops growing long before a float would overflow (attempt 1100 did).
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
        jittered = self.rng.uniform(0, ceiling) if ceiling > 0 else 0.0
        return max(jittered, retry_after or 0.0)
