"""What the recovery history says, as frozen records and pure functions (no SQL here).

``_history`` reads and writes the rows; this module decides what a row means: whether a
claim would win, what replaces the request when it does not, and how chains of re-triggers
add up for ``bulkretry status``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._outcomes import Outcome, Skipped, Uncertain


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimPolicy:
    """What a job may take over: the job-wide flags that decide a claim."""

    max_generations: int = 3
    again: bool = False
    retry_uncertain: bool = False
    lease_s: float = 90.0
    """How long an intent with no outcome belongs to its job (a request's timeout and more)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """A run ID to claim before its request leaves; ``flow_id`` when the input named it."""

    run_id: str
    flow_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRow:
    """One row of the history, as ``pending`` and ``chains`` read it back."""

    run_id: str
    flow_id: str | None
    generation: int
    parent_run_id: str | None
    original_run_id: str | None
    state: str | None
    """Our re-trigger of this run: intent, retriggered, failed, uncertain (None: never claimed)."""
    new_run_id: str | None
    status: int | None
    error: str | None
    retriggered_at: str | None
    created_at: str | None
    """When bulkretry created this run by a re-trigger (None for an original)."""
    run_status: str | None
    """The run's own fate once followed: pending, success, failed (None: an original)."""
    records: int | None
    run_error: str | None
    finished_at: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """One original run and how far its re-triggers got (``bulkretry status``'s line)."""

    run_id: str
    flow_id: str | None
    generation: int
    latest_run_id: str | None
    latest_status: str | None
    """pending, success or failed for the latest new run; our outcome when none was made."""
    retriggered_at: str | None
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lineage:
    """What ``bulkretry failed`` adds to a listed run."""

    generation: int
    original_run_id: str | None
    retriggered: bool


def verdict(run_id: str, row: Any, policy: ClaimPolicy, stamp: str) -> Outcome | None:  # noqa: ANN401 - a database row
    """The outcome that replaces a request for this row, or None when a claim would win."""
    if row is None:
        return None
    state, generation, original, new_run_id, etag, status, error, owner, lease = row
    if generation >= policy.max_generations:
        detail = f"generation {generation} of {original or run_id}: a person should look"
        return Skipped(run_id=run_id, reason="generation-limit", detail=detail)
    live_intent = (
        state == "intent" and lease is not None and lease >= stamp and not owner_gone(owner)
    )
    if state == "retriggered" and not policy.again:
        return Skipped(
            run_id=run_id, reason="already-retriggered", new_run_id=new_run_id or "", etag=etag
        )
    if live_intent:
        return Uncertain(
            run_id=run_id,
            status=None,
            error=f"claimed by a running bulkretry job ({owner}) until {lease}: it may be "
            "sending it now",
            attempts=0,
        )
    if state in {"intent", "uncertain"} and not (policy.again or policy.retry_uncertain):
        text = error or "history has an intent with no outcome: the request may have been applied"
        return Uncertain(run_id=run_id, status=status, error=text, attempts=0)
    return None


def owner_gone(owner: str | None) -> bool:
    """Whether a claim's holder (``host:pid:tag``) was a process on this host that has ended.

    A job killed with ``kill -9`` leaves its claims behind; on the same host they need not
    wait out their lease before ``--retry-uncertain`` or ``--again`` may take them.
    """
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, under another user
        return False
    return False


def chains_of(rows: list[RunRow], since: str | None, flows: frozenset[str]) -> list[Chain]:
    latest: dict[str, RunRow] = {}
    for row in rows:
        if row.original_run_id is not None:
            best = latest.get(row.original_run_id)
            if best is None or (row.generation, row.created_at or "") > (
                best.generation,
                best.created_at or "",
            ):
                latest[row.original_run_id] = row
    chains = []
    for row in rows:
        if row.original_run_id is not None or row.state is None:
            continue
        last = latest.get(row.run_id)
        chain = Chain(
            run_id=row.run_id,
            flow_id=row.flow_id,
            generation=last.generation if last else 0,
            latest_run_id=last.run_id if last else None,
            latest_status=(last.run_status or "pending") if last else row.state,
            retriggered_at=last.created_at if last else row.retriggered_at,
            error=(last.run_error or last.error) if last else row.error,
        )
        when = chain.retriggered_at or ""
        if (since is None or when >= since) and (not flows or chain.flow_id in flows):
            chains.append(chain)
    return chains


@dataclass(frozen=True, slots=True, kw_only=True)
class Count:
    """``bulkretry status --summary``: chains per flow and error code, by how they ended."""

    flow_id: str | None
    error_code: str | None
    retriggered: int = 0
    recovered: int = 0
    failed_again: int = 0
    pending: int = 0
    exhausted: int = 0


def tally(chains: Sequence[Chain], *, max_generations: int = 3) -> list[Count]:
    """Count chains per (flow, error code of the latest failure); ``exhausted`` = at the limit."""
    counts: dict[tuple[str | None, str | None], dict[str, int]] = {}
    for chain in chains:
        code = chain.error.split(":", 1)[0].strip() if chain.error else None
        bucket = counts.setdefault((chain.flow_id, code), {})
        if chain.latest_run_id is None:
            continue  # claimed, never re-triggered: nothing to follow
        bucket["retriggered"] = bucket.get("retriggered", 0) + 1
        end = {"success": "recovered", "failed": "failed_again"}.get(chain.latest_status or "")
        if end == "failed_again" and chain.generation >= max_generations:
            end = "exhausted"
        name = end or "pending"
        bucket[name] = bucket.get(name, 0) + 1
    return [
        Count(flow_id=flow, error_code=code, **numbers)
        for (flow, code), numbers in sorted(counts.items(), key=lambda kv: (str(kv[0]),))
        if numbers
    ]
