"""What a Flow Service run's JSON says, read defensively: listing and following share it.

Adobe's run objects are large and loosely typed; a field of the wrong type reads as absent
rather than failing the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final


@dataclass(frozen=True, slots=True, kw_only=True)
class RunState:
    """The few facts bulkretry uses from one run object."""

    run_id: str | None
    flow_id: str | None
    status: str  # lower case; empty when absent
    created_at: str | None  # ISO 8601, UTC
    records: int  # outputRecordCount, 0 when absent
    error_code: str | None  # the first error's code
    error: str | None  # the first error as "code: message"


def run_state(run: dict[str, Any]) -> RunState:
    """Read one item of ``GET /runs`` or ``GET /runs/{id}``."""
    metrics = _object(run.get("metrics"))
    summary = _object(metrics.get("statusSummary"))
    errors = summary.get("errors")
    first = _object(errors[0]) if isinstance(errors, list) and errors else {}
    code, message = first.get("code") or None, first.get("message") or None
    run_id, flow_id = run.get("id"), run.get("flowId")
    return RunState(
        run_id=run_id if isinstance(run_id, str) and run_id else None,
        flow_id=flow_id if isinstance(flow_id, str) and flow_id else None,
        status=str(summary.get("status") or "").lower(),
        created_at=_iso(run.get("createdAt")),
        records=_int(_object(metrics.get("recordSummary")).get("outputRecordCount")),
        error_code=str(code) if code else None,
        error=f"{code}: {message}" if code else (str(message) if message else None),
    )


def run_in_answer(answer: object, run_id: str) -> RunState | None:
    """The run ``run_id`` in a ``GET /runs/{id}`` answer, or None when it is not there.

    The tutorial answers ``{"items": [run]}``; Adobe's OpenAPI file (and some proxies) the
    run object itself.
    """
    page = _object(answer)
    items = page.get("items")
    for item in items if isinstance(items, list) else [page]:
        if isinstance(item, dict) and item.get("id") == run_id:
            return run_state(item)
    return None


def _object(value: object) -> dict[str, Any]:
    """A JSON object, or an empty one when the API sent something else."""
    return value if isinstance(value, dict) else {}


_MAX_COUNT: Final = 2**63 - 1
"""The largest count both databases store (a BIGINT): anything above is not a real count."""


def _int(value: object) -> int:
    """A count, or 0 when the API sent something else (a string, a bool, an absurd number)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT:
        return value
    return 0


def _iso(epoch_ms: object) -> str | None:
    if not isinstance(epoch_ms, int | float) or isinstance(epoch_ms, bool):
        return None
    try:
        when = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):  # 1e20, 1e300, NaN: no such moment
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
