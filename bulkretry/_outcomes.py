"""Frozen per-run results: the one vocabulary shared by pipeline, journal and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

SkipReason = Literal[
    "invalid", "duplicate", "already-retriggered", "interrupted", "generation-limit"
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Retriggered:
    """The API accepted the re-trigger and named the new run."""

    event: ClassVar[str] = "retriggered"
    level: ClassVar[str] = "info"
    run_id: str
    new_run_id: str
    etag: str | None
    attempts: int
    status: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """Certainly not re-triggered: refused, or every safe attempt was used up."""

    event: ClassVar[str] = "failed"
    level: ClassVar[str] = "error"
    run_id: str
    status: int | None
    error: str
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Uncertain:
    """Maybe re-triggered: the request was sent but its answer was lost or garbled."""

    event: ClassVar[str] = "uncertain"
    level: ClassVar[str] = "warning"
    run_id: str
    status: int | None
    error: str
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """No request was sent for this line, and ``reason`` says why."""

    event: ClassVar[str] = "skipped"
    level: ClassVar[str] = "warning"
    run_id: str
    reason: SkipReason
    new_run_id: str | None = None
    etag: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """A dry run would have sent this run ID."""

    event: ClassVar[str] = "planned"
    level: ClassVar[str] = "info"
    run_id: str


Outcome = Retriggered | Failed | Uncertain | Skipped | Planned


def outcome_fields(outcome: Outcome) -> dict[str, Any]:
    """The JSON fields of an outcome; a ``skipped`` line leaves out the ones it does not use."""
    if isinstance(outcome, Skipped):
        return {
            name: value
            for name in outcome.__slots__
            if (value := getattr(outcome, name)) is not None
        }
    return {name: getattr(outcome, name) for name in outcome.__slots__}


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Counts for the job's last line; ``total`` is every run ID read."""

    event: ClassVar[str] = "summary"
    total: int
    retriggered: int
    failed: int
    uncertain: int
    skipped: int
    planned: int
    elapsed_s: float


@dataclass(slots=True, kw_only=True)
class Tally:
    """Running counts, kept by whoever emits outcomes, turned into a ``Summary`` at the end."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("retriggered", "failed", "uncertain", "skipped", "planned"), 0
        )
    )
    invalid: int = 0

    def add(self, outcome: Outcome) -> None:
        """Count one final outcome."""
        self.counts[outcome.event] += 1
        if isinstance(outcome, Skipped) and outcome.reason == "invalid":
            self.invalid += 1

    @property
    def total(self) -> int:
        """Run IDs that got a final line so far."""
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        """True when nothing failed, nothing is uncertain and no line was invalid."""
        return not (self.counts["failed"] or self.counts["uncertain"] or self.invalid)

    def summary(self, elapsed_s: float) -> Summary:
        """Freeze the counts."""
        return Summary(total=self.total, elapsed_s=round(elapsed_s, 3), **self.counts)
