"""What the emulator remembers: runs as the Flow Service holds them, and what it was asked."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from bulkretry.emulator.faults import FaultPlan, Faults

#: How long a finished emulated run took; only shapes the timestamps in its JSON.
_RUN_DURATION = dt.timedelta(seconds=95)


def new_etag() -> str:
    """Mimic Cosmos DB etags, literal double quotes included, as Adobe returns them."""
    return f'"{secrets.token_hex(4)}-0000-0200-0000-{secrets.token_hex(6)}"'


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def epoch_ms(moment: dt.datetime) -> int:
    """Flow Service speaks epoch milliseconds in every timestamp."""
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One dataflow run.

    ``status`` is emitted verbatim (``"Failed"`` or ``"FAILED"`` test case-insensitive
    clients); ``output_records=None`` omits ``outputRecordCount`` from the JSON, as the
    real API sometimes does. A ``poison`` run fails every time it is re-triggered (a
    mapping error, say), and its re-runs inherit that. ``completed_at`` is when a finished
    run ended (default: 95 seconds after it started).
    """

    id: str
    flow_id: str
    status: str = "failed"
    created_at: dt.datetime = field(default_factory=_utcnow)
    output_records: int | None = 0
    input_records: int = 0
    failed_records: int = 0
    errors: tuple[tuple[str, str], ...] = ()
    etag: str = field(default_factory=new_etag)
    poison: bool = False
    completed_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        for moment in (self.created_at, self.completed_at):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"Run {self.id}: times must be timezone-aware")

    @property
    def retriable(self) -> bool:
        """Adobe re-triggers failed runs and successful runs that ingested nothing."""
        status = self.status.lower()
        return status == "failed" or (status == "success" and not self.output_records)

    @property
    def created_ms(self) -> int:
        """Sort and filter key, in the unit the API uses."""
        return epoch_ms(self.created_at)

    def to_json(self) -> dict[str, Any]:
        """Shape the run like ``GET /runs`` items, so clients parse the real layout."""
        started = self.created_ms
        in_progress = self.status.lower() == "inprogress"
        completed = self.completed_at or self.created_at + _RUN_DURATION
        finished = started if in_progress else epoch_ms(completed)
        records: dict[str, int] = {
            "inputRecordCount": self.input_records,
            "failedRecordCount": self.failed_records,
        }
        if self.output_records is not None:
            records["outputRecordCount"] = self.output_records
        status: dict[str, Any] = {"status": self.status}
        if self.errors:
            status["errors"] = [{"code": code, "message": msg} for code, msg in self.errors]
        duration = {"startedAtUTC": started}
        if not in_progress:
            duration["completedAtUTC"] = finished
        return {
            "id": self.id,
            "flowId": self.flow_id,
            "etag": self.etag,
            "createdAt": started,
            "updatedAt": finished,
            "createdBy": "acp_foundation_connectors@AdobeID",
            "createdClient": "acp_foundation_connectors",
            "updatedBy": "acp_foundation_connectors@AdobeID",
            "updatedClient": "acp_foundation_connectors",
            "metrics": {
                "durationSummary": duration,
                "sizeSummary": {"inputBytes": self.input_records * 512, "outputBytes": 0},
                "recordSummary": records,
                "fileSummary": {"inputFileCount": 1 if self.input_records else 0},
                "statusSummary": status,
            },
            "activities": [],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        """Build a run from JSON with the dataclass field names; ``created_at`` is ISO 8601."""
        fields = dict(data)
        for name in ("created_at", "completed_at"):
            if fields.get(name) is not None:
                fields[name] = dt.datetime.fromisoformat(str(fields[name]))
        fields["errors"] = tuple(
            (str(e["code"]), str(e["message"])) if isinstance(e, dict) else (str(e[0]), str(e[1]))
            for e in fields.get("errors", ())
        )
        return cls(**fields)

    def retriggered(self) -> Run:
        """Start the run a re-trigger creates: same flow, running from now, poison if this is."""
        return Run(
            id=str(uuid.uuid4()),
            flow_id=self.flow_id,
            status="inProgress",
            poison=self.poison,
        )


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One Flow Service request as received.

    ``query`` keeps the first value of each parameter; ``query_all`` keeps every pair in
    order, for repeated parameters such as ``property``. Header names are lower case.
    """

    method: str
    path: str
    query: dict[str, str]
    query_all: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    at: float
    run_id: str | None


@dataclass(slots=True)
class Stats:
    """Counters tests read after a job.

    ``retriggers`` counts re-triggers *applied* per original run ID: a value above 1 is a
    duplicate ingestion. ``requests`` and ``responses`` cover Flow Service traffic only,
    so "nothing was sent" reads as an empty list; ``responses`` counts dropped connections
    under 0. IMS traffic shows in ``token_requests``, ``token_scopes`` and
    ``token_content_types`` (IMS wants a form, not JSON).
    """

    retriggers: Counter[str] = field(default_factory=Counter)
    requests: list[RecordedRequest] = field(default_factory=list)
    responses: Counter[int] = field(default_factory=Counter)
    token_requests: int = 0
    token_scopes: list[str] = field(default_factory=list)
    token_content_types: list[str] = field(default_factory=list)

    def reset(self) -> None:
        """Start a test phase from zero without rebuilding the emulator."""
        self.retriggers.clear()
        self.requests.clear()
        self.responses.clear()
        self.token_requests = 0
        self.token_scopes.clear()
        self.token_content_types.clear()


class Emulated(Protocol):
    """What every route uses of the emulator (``app.Emulator`` is one): counters and faults."""

    stats: Stats
    plan: FaultPlan
    faults: Faults
