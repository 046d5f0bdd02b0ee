"""Frozen per-run results: the one vocabulary shared by pipeline, journal and report."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal

SkipReason = Literal[
    "invalid", "duplicate", "already-retriggered", "interrupted", "generation-limit"
]
FinishStatus = Literal["success", "failed", "timed-out"]


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
class _LastAnswer:
    """What ``failed`` and ``uncertain`` lines both say: the last answer, in the API's words."""

    run_id: str
    status: int | None
    error: str
    attempts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed(_LastAnswer):
    """Certainly not re-triggered: refused, or every safe attempt was used up."""

    event: ClassVar[str] = "failed"
    level: ClassVar[str] = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Uncertain(_LastAnswer):
    """Maybe re-triggered: the request was sent but its answer was lost or garbled."""

    event: ClassVar[str] = "uncertain"
    level: ClassVar[str] = "warning"


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
Settled = Retriggered | Failed | Uncertain
"""An attempt's outcome, as the ledgers record it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """``--wait``: the new run of a ``retriggered`` line ended, or was given up on.

    An extra line after the run ID's final one, not a final line itself: ``total`` does not
    count it. ``error`` is the new run's first error when it failed, else None.
    """

    event: ClassVar[str] = "finished"
    run_id: str
    new_run_id: str
    status: FinishStatus
    records: int
    error: str | None
    duration_s: float

    @property
    def level(self) -> str:
        """Success is news, failure an error, a timeout a warning."""
        return {"success": "info", "failed": "error"}.get(self.status, "warning")


Line = Outcome | Finished
"""Everything a job reports before its summary."""

_FIELDS: dict[type[Line], tuple[str, ...]] = {
    kind: tuple(item.name for item in fields(kind))  # inherited ones too, unlike __slots__
    for kind in (Retriggered, Failed, Uncertain, Skipped, Planned, Finished)
}


def outcome_fields(outcome: Line) -> dict[str, Any]:
    """The JSON fields of an outcome; a ``skipped`` line leaves out the ones it does not use."""
    names = _FIELDS[type(outcome)]
    if isinstance(outcome, Skipped):
        return {name: value for name in names if (value := getattr(outcome, name)) is not None}
    return {name: getattr(outcome, name) for name in names}


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
    recovered: int | None = None  # these three only with --wait
    failed_again: int | None = None
    unfinished: int | None = None

    def fields(self) -> dict[str, Any]:
        """The summary line's fields; the --wait counts only when the job followed runs."""
        return {
            name: value for name in self.__slots__ if (value := getattr(self, name)) is not None
        }


@dataclass(slots=True, kw_only=True)
class Tally:
    """Running counts, kept by whoever emits outcomes, turned into a ``Summary`` at the end."""

    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("retriggered", "failed", "uncertain", "skipped", "planned"), 0
        )
    )
    invalid: int = 0
    ended: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("success", "failed", "timed-out"), 0)
    )

    def add(self, outcome: Line) -> None:
        """Count one final outcome, or one ``finished`` line."""
        if isinstance(outcome, Finished):
            self.ended[outcome.status] += 1
            return
        self.counts[outcome.event] += 1
        if isinstance(outcome, Skipped) and outcome.reason in {"invalid", "generation-limit"}:
            self.invalid += 1  # both need a person: the exit status says so

    @property
    def total(self) -> int:
        """Run IDs that got a final line so far."""
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        """True when nothing failed or is uncertain, and no line was invalid or at the limit."""
        return not (self.counts["failed"] or self.counts["uncertain"] or self.invalid)

    @property
    def recovered(self) -> bool:
        """``--wait``: True when every re-triggered run was seen to finish ``success``."""
        return self.ended["success"] == self.counts["retriggered"]

    def summary(self, elapsed_s: float, *, followed: bool = False) -> Summary:
        """Freeze the counts; ``followed`` adds the ``--wait`` ones."""
        summary = Summary(total=self.total, elapsed_s=round(elapsed_s, 3), **self.counts)
        if not followed:
            return summary
        recovered, failed_again = self.ended["success"], self.ended["failed"]
        return replace(
            summary,
            recovered=recovered,
            failed_again=failed_again,
            unfinished=self.counts["retriggered"] - recovered - failed_again,
        )
