"""Fault injection: which misbehaviour, if any, answers the next request."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Faults answered before the re-trigger is applied: retrying them is safe. ``not_found``
#: answers 404 FLOW-1439 (for ``get_script``: a run the API does not show), ``unauthorized``
#: the gateway's 401013 as if the token were not valid.
BEFORE: Final = frozenset({"throttle", "unavailable", "drop_before", "not_found", "unauthorized"})
#: Faults answered after the re-trigger is applied: the client cannot know it worked.
#: Hostile answers, after applying: a body of ``body_size`` bytes, one without end, and a gzip
#: bomb inflating to ``body_size`` bytes. Scripted only.
#: ``trickle_after`` sends one byte every 50 ms, for ever: only a timeout on the whole
#: answer ends it.
OVERSIZED: Final = frozenset({"huge_after", "endless_after", "bomb_after", "trickle_after"})
#: ``echo_after`` answers 200 in HTML quoting the request's Authorization header back.
#: Re-trigger only, a 2xx JSON answer whose ``id`` is the token (``echo_id``) or no run ID
#: (``bad_id``: a newline, over 128 characters), or whose etag quotes the token (``echo_etag``).
ODD_IDS: Final = frozenset({"echo_id", "bad_id", "echo_etag"})
AFTER: Final = (
    frozenset({"error_after", "drop_after", "garbled_after", "timeout_after", "echo_after"})
    | OVERSIZED
    | ODD_IDS
)
#: ``wild_dates`` (listing pages only): runs whose ``createdAt`` no calendar holds.
FAULT_NAMES: Final = BEFORE | AFTER | {"ok", "wild_dates"}
#: ``list_script`` only: the page is served, with a next link that leads back to itself, to the
#: first page (no token), or to the right page but through another collection's path.
LINK_FAULT_NAMES: Final = frozenset({"self_link", "first_link", "connections_link"})
#: ``echo_secret``: IMS refuses, quoting the form body (URL-encoded) and a piece of the secret.
IMS_FAULT_NAMES: Final = (
    frozenset({"throttle", "unavailable", "drop_before", "echo_secret", "ok"}) | OVERSIZED
)
#: Probabilistic faults in the fixed order their probabilities are stacked.
DRAW_ORDER: Final = (
    "throttle",
    "unavailable",
    "drop_before",
    "error_after",
    "drop_after",
    "garbled_after",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """How the emulator misbehaves; the default misbehaves never.

    The six probabilities are drawn once per re-trigger POST and are mutually exclusive
    (their sum must not exceed 1). ``script`` maps a run ID to fault names consumed one per
    re-trigger of that ID, overriding the draw; when it runs out the draw applies again.
    ``list_script`` does the same for ``GET /runs`` pages (nothing is applied there, so
    "error_after" is simply a 500), and ``get_script`` for ``GET /runs/{id}``. ``max_rate``
    admits at most that many re-triggers in any sliding second and answers the rest 429.
    With ``burst`` it is a token bucket instead: ``max_rate`` tokens a second, at most
    ``burst`` saved up (full at start). ``rate_schedule`` changes the cap mid-job:
    ``(seconds, cap)`` pairs, counted from the first re-trigger.
    ``body_size`` sizes the oversized answers.
    """

    throttle: float = 0.0
    unavailable: float = 0.0
    drop_before: float = 0.0
    error_after: float = 0.0
    drop_after: float = 0.0
    garbled_after: float = 0.0
    retry_after: int | None = 1
    latency: float = 0.0
    max_rate: float | None = None
    burst: int | None = None
    rate_schedule: Sequence[tuple[float, float]] = ()
    script: Mapping[str, Sequence[str]] = field(default_factory=dict)
    list_script: Sequence[str] = ()
    get_script: Sequence[str] = ()
    ims_unavailable: float = 0.0
    ims_script: Sequence[str] = ()
    body_size: int = 64 * 2**20

    def __post_init__(self) -> None:
        probabilities = [getattr(self, name) for name in DRAW_ORDER]
        for value in [*probabilities, self.ims_unavailable]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault probability {value} is outside [0, 1]")
        if sum(probabilities) > 1.0 + 1e-9:
            raise ValueError("fault probabilities are exclusive; their sum must be at most 1")
        if self.latency < 0 or (self.max_rate is not None and self.max_rate <= 0):
            raise ValueError("latency must be >= 0 and max_rate > 0 (or None)")
        if self.body_size < 1:
            raise ValueError("body_size must be at least 1 byte")
        schedule = tuple(sorted((float(at), float(cap)) for at, cap in self.rate_schedule))
        if (self.burst is not None and self.burst < 1) or any(cap <= 0 for _, cap in schedule):
            raise ValueError("burst must be >= 1 and every scheduled cap > 0")
        if schedule and self.max_rate is None:
            raise ValueError("rate_schedule changes max_rate: set max_rate too")
        object.__setattr__(self, "rate_schedule", schedule)
        script = {run_id: tuple(names) for run_id, names in self.script.items()}
        _check_names([*(n for names in script.values() for n in names), *self.get_script])
        _check_names(self.list_script, FAULT_NAMES | LINK_FAULT_NAMES)
        _check_names(self.ims_script, IMS_FAULT_NAMES)
        # Freeze the containers so a shared Faults cannot change under a running test.
        object.__setattr__(self, "script", MappingProxyType(script))
        object.__setattr__(self, "list_script", tuple(self.list_script))
        object.__setattr__(self, "get_script", tuple(self.get_script))
        object.__setattr__(self, "ims_script", tuple(self.ims_script))


def _check_names(names: Sequence[str], allowed: frozenset[str] = FAULT_NAMES) -> None:
    unknown = sorted(set(names) - allowed)
    if unknown:
        raise ValueError(f"unknown fault names {unknown}; choose from {sorted(allowed)}")


class FaultPlan:
    """The moving parts behind ``Faults``: seeded draws, script cursors, the rate window."""

    def __init__(self, seed: int) -> None:
        # Reproducible chaos for tests and benchmarks, not security.
        self._rng = random.Random(seed)  # noqa: S311
        self._cursors: dict[str, int] = {}
        self._list_cursor = 0
        self._get_cursor = 0
        self._ims_cursor = 0
        self._admitted: deque[float] = deque()
        self._tokens: float | None = None  # the token bucket, full at the first request
        self._refilled = 0.0
        self._origin: float | None = None  # first re-trigger: where rate_schedule counts from

    def restart_scripts(self) -> None:
        """Start every script (and the rate schedule) from the top, as a new ``Faults`` should."""
        self._cursors.clear()
        self._list_cursor = 0
        self._get_cursor = 0
        self._ims_cursor = 0
        self._origin = None

    def over_rate(self, faults: Faults, now: float) -> bool:
        """Whether the gateway refuses this re-trigger: a sliding log, or a token bucket."""
        if faults.max_rate is None:
            return False
        cap = self._cap(faults, now)
        if faults.burst is not None:
            return not self._take_token(cap, faults.burst, now)
        while self._admitted and self._admitted[0] <= now - 1.0:
            self._admitted.popleft()
        if len(self._admitted) >= cap:
            return True
        self._admitted.append(now)
        return False

    def _cap(self, faults: Faults, now: float) -> float:
        if self._origin is None:
            self._origin = now
        cap = faults.max_rate or 0.0
        for at, scheduled in faults.rate_schedule:
            if now - self._origin >= at:
                cap = scheduled
        return cap

    def _take_token(self, rate: float, burst: int, now: float) -> bool:
        tokens = burst if self._tokens is None else self._tokens
        tokens = min(float(burst), tokens + (now - self._refilled) * rate)
        self._refilled = now
        self._tokens = tokens - 1 if tokens >= 1 else tokens
        return tokens >= 1

    def retrigger_fault(self, faults: Faults, run_id: str) -> str:
        """Next scripted fault for this run, else a draw; ``"ok"`` means behave."""
        script = faults.script.get(run_id, ())
        position = self._cursors.get(run_id, 0)
        if position < len(script):
            self._cursors[run_id] = position + 1
            return script[position]
        draw = self._rng.random()
        for name in DRAW_ORDER:
            draw -= getattr(faults, name)
            if draw < 0:
                return name
        return "ok"

    def list_fault(self, faults: Faults) -> str:
        """Next scripted fault for a ``GET /runs`` page."""
        fault, self._list_cursor = _scripted(faults.list_script, self._list_cursor)
        return fault

    def get_fault(self, faults: Faults) -> str:
        """Next scripted fault for a ``GET /runs/{id}``."""
        fault, self._get_cursor = _scripted(faults.get_script, self._get_cursor)
        return fault

    def ims_fault(self, faults: Faults) -> str:
        """Next scripted IMS fault, else a draw against ``ims_unavailable``."""
        if self._ims_cursor < len(faults.ims_script):
            self._ims_cursor += 1
            return faults.ims_script[self._ims_cursor - 1]
        if faults.ims_unavailable and self._rng.random() < faults.ims_unavailable:
            return "unavailable"
        return "ok"


def _scripted(script: Sequence[str], cursor: int) -> tuple[str, int]:
    """The fault at ``cursor`` and the cursor after it; ``"ok"`` once the script is used up."""
    return (script[cursor], cursor + 1) if cursor < len(script) else ("ok", cursor)
