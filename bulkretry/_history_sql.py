"""The history's SQL: its schema, every statement, and the functions that run them on a ``Db``.

All of the history's SQL lives here (issue 16); ``_history`` decides when each runs, in which
thread, and what its answers mean. Statements that take many rows are built here too: a
group commit's multi-row statements take their values by position (``?N``: no lookup by name
for each of a few hundred values), first the shared ones, named in ``CLAIM_SHARED``, then the
rows' own, at most ``_BATCH`` rows a statement; each touches rows in run ID order, so two
jobs' statements never deadlock.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, Final, TypeVar

from ._database import Db
from ._errors import UsageError
from ._history_location import HistoryLocation
from ._lineage import Claim, RunRow
from ._outcomes import Retriggered, Settled

T = TypeVar("T")

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS bulkretry_schema (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS bulkretry_runs (
        org TEXT NOT NULL, sandbox TEXT NOT NULL, run_id TEXT NOT NULL, flow_id TEXT,
        generation INTEGER NOT NULL DEFAULT 0, parent_run_id TEXT, original_run_id TEXT,
        state TEXT, owner TEXT, lease_until TEXT, claimed_at TEXT,
        new_run_id TEXT, etag TEXT, status INTEGER, error TEXT, retriggered_at TEXT,
        created_at TEXT, run_status TEXT, records BIGINT, run_error TEXT, finished_at TEXT,
        PRIMARY KEY (org, sandbox, run_id))""",
    # No query reads runs by their original; the index an early build made cost every write.
    "DROP INDEX IF EXISTS bulkretry_runs_original",
    """INSERT INTO bulkretry_schema (key, value) VALUES ('version', :version)
        ON CONFLICT (key) DO NOTHING""",
)


def _numbered(sql: str, shared: Sequence[str]) -> str:
    """``:name`` → ``?N`` for the shared values, numbered in order from 1."""
    for number, name in enumerate(shared, 1):
        sql = re.sub(rf":{name}\b", f"?{number}", sql)
    return sql


# The group commit's statements take their values by position (``?N``: no lookup by name for
# each of a few hundred values): first the shared ones, named below, then the rows' own.
_CLAIM_SHARED: Final = (
    "org", "sandbox", "owner", "lease_until", "now", "max_generations", "again",
    "retry_uncertain", "gone",
)  # fmt: skip
_CLAIM_HEAD: Final = _numbered(
    """
INSERT INTO bulkretry_runs AS r (org, sandbox, run_id, flow_id, state, owner, lease_until,
                                 claimed_at)
VALUES """,
    _CLAIM_SHARED,
)
_CLAIM_ROW: Final = _numbered(
    "(:org, :sandbox, ?{}, ?{}, 'intent', :owner, :lease_until, :now)", _CLAIM_SHARED
)
"""One claim: run ID, flow ID."""
_AHEAD_TAIL: Final = "\nON CONFLICT (org, sandbox, run_id) DO NOTHING"
"""A claim made ahead: only a run never seen before."""
_CLAIM_TAIL: Final = _numbered(
    """
ON CONFLICT (org, sandbox, run_id) DO UPDATE SET
    state = 'intent', owner = excluded.owner, lease_until = excluded.lease_until,
    claimed_at = excluded.claimed_at, flow_id = COALESCE(excluded.flow_id, r.flow_id),
    status = NULL, error = NULL
WHERE r.generation < :max_generations AND (
    r.state IS NULL OR r.state = 'failed'
    OR (:again = 1 AND r.state = 'retriggered')
    OR ((:again = 1 OR :retry_uncertain = 1)
        AND (r.state = 'uncertain'
             OR (r.state = 'intent' AND (r.lease_until < :now OR r.owner = :gone)))))""",
    _CLAIM_SHARED,
)
_MINE: Final = _numbered(
    """
SELECT run_id FROM bulkretry_runs WHERE org = :org AND sandbox = :sandbox AND run_id IN ({})
    AND state = 'intent' AND owner = :owner AND claimed_at = :now""",
    _CLAIM_SHARED,
)
"""Which claims of a statement that did not grant all won: ours, made by this commit."""
_UNUSED: Final = _numbered(
    """
DELETE FROM bulkretry_runs WHERE org = :org AND sandbox = :sandbox AND run_id IN ({})
    AND state = 'intent' AND owner = :owner""",
    _CLAIM_SHARED,
)
"""Claims made ahead that no request used: the rows they inserted, still this job's intents."""
_BATCH: Final = 500
"""Rows per statement: one multi-row statement, well under SQLite's 32,766 parameters."""
_ROW: Final = (
    "SELECT state, generation, original_run_id, new_run_id, etag, status, error, owner,"
    " lease_until FROM bulkretry_runs WHERE org = :org AND sandbox = :sandbox AND run_id = :run_id"
)
_OUTCOME_SHARED: Final = ("org", "sandbox", "now", "owner")
_OUTCOME_ROW: Final = "(?{}, ?{}, ?{}, ?{}, CAST(?{} AS INTEGER), ?{})"
"""One outcome: run ID, state, new run ID, etag, HTTP status, error."""
_SETTLE: Final = _numbered(
    """
WITH v (run_id, state, new_run_id, etag, status, error) AS (VALUES {})
UPDATE bulkretry_runs AS r SET state = v.state, new_run_id = v.new_run_id, etag = v.etag,
    status = v.status, error = v.error, owner = NULL, lease_until = NULL,
    retriggered_at = CASE WHEN v.state = 'retriggered' THEN :now ELSE r.retriggered_at END,
    run_status = CASE WHEN v.state = 'retriggered' AND r.run_status = 'pending' THEN 'failed'
                      ELSE r.run_status END
FROM v WHERE r.org = :org AND r.sandbox = :sandbox AND r.run_id = v.run_id
    AND r.state = 'intent' AND r.owner = :owner""",
    _OUTCOME_SHARED,
)
"""Outcomes, each over this job's own intent only: never over a claim another job holds now."""
_CHILD: Final = _numbered(
    """
WITH v (run_id, state, new_run_id, etag, status, error) AS (VALUES {})
INSERT INTO bulkretry_runs AS c (org, sandbox, run_id, flow_id, generation, parent_run_id,
                                 original_run_id, created_at, run_status)
SELECT r.org, r.sandbox, v.new_run_id, r.flow_id, r.generation + 1, r.run_id,
       COALESCE(r.original_run_id, r.run_id), :now, 'pending'
FROM v CROSS JOIN bulkretry_runs AS r
WHERE v.state = 'retriggered' AND r.org = :org AND r.sandbox = :sandbox AND r.run_id = v.run_id
ON CONFLICT (org, sandbox, run_id) DO UPDATE SET
    flow_id = COALESCE(c.flow_id, excluded.flow_id), generation = excluded.generation,
    parent_run_id = excluded.parent_run_id, original_run_id = excluded.original_run_id,
    created_at = excluded.created_at
WHERE c.parent_run_id IS NULL""",
    _OUTCOME_SHARED,
)
"""A new run's lineage; its end may be recorded first (``--wait`` races the group commit),
and is then kept."""

_FINISHED: Final = """
INSERT INTO bulkretry_runs (org, sandbox, run_id, flow_id, run_status, records, run_error,
                            finished_at)
VALUES (:org, :sandbox, :run_id, :flow_id, :run_status, :records, :run_error, :finished_at)
ON CONFLICT (org, sandbox, run_id) DO UPDATE SET
    run_status = excluded.run_status, records = excluded.records,
    run_error = excluded.run_error, finished_at = excluded.finished_at,
    flow_id = COALESCE(excluded.flow_id, bulkretry_runs.flow_id)"""
_RUNS: Final = (
    "SELECT run_id, flow_id, generation, parent_run_id, original_run_id, state, new_run_id,"
    " status, error, retriggered_at, created_at, run_status, records, run_error, finished_at"
    " FROM bulkretry_runs WHERE org = :org AND sandbox = :sandbox"
)


def _parts(rows: Sequence[T]) -> list[Sequence[T]]:
    """``rows`` in statements of at most ``_BATCH``."""
    return [rows[start : start + _BATCH] for start in range(0, len(rows), _BATCH)]


def _claim_batch(db: Db, claims: Sequence[Claim], shared: dict[str, Any], tail: str) -> set[str]:
    """One multi-row insert; the run IDs it granted (rows in run ID order: no deadlocks).

    ``tail`` decides which existing rows it takes: ``_CLAIM_TAIL`` the policy's, and
    ``_AHEAD_TAIL`` none. Its count of rows written says whether all won (the usual case);
    only when some lost does a second statement read which.
    """
    values = [shared[name] for name in _CLAIM_SHARED]
    for claim in claims:
        values += (claim.run_id, claim.flow_id)
    first, count = len(_CLAIM_SHARED) + 1, len(claims)
    rows = _rows(_CLAIM_ROW, count, first, 2)
    if db.change(_CLAIM_HEAD + rows + tail, values) == count:
        return {claim.run_id for claim in claims}
    ids = _MINE.format(_rows("?{}", count, first, 2))
    return {row[0] for row in db.execute(ids, values[:-1])}  # the last flow ID is not read


def _settle(db: Db, outcomes: Sequence[Settled], shared: list[Any]) -> None:
    """Record each new run's lineage, then the outcomes: two multi-row statements.

    In that order: a crash between them leaves the parents intents (``uncertain``, never
    sent again) rather than re-triggered runs whose new runs have no lineage.
    """
    rows = _rows(_OUTCOME_ROW, len(outcomes), len(shared) + 1, 6)
    values = _outcome_values(outcomes, shared)
    new = [outcome.new_run_id for outcome in outcomes if isinstance(outcome, Retriggered)]
    if len(set(new)) == len(new):
        db.change(_CHILD.format(rows), values)
    else:
        one = _rows(_OUTCOME_ROW, 1, len(shared) + 1, 6)
        for outcome in outcomes:  # one new run ID answered for two runs: the first keeps it
            db.change(_CHILD.format(one), _outcome_values([outcome], shared))
    db.change(_SETTLE.format(rows), values)


def _outcome_values(outcomes: Sequence[Settled], shared: list[Any]) -> list[Any]:
    values = list(shared)
    for outcome in outcomes:
        if isinstance(outcome, Retriggered):
            new, etag, error = outcome.new_run_id, outcome.etag, None
        else:
            new, etag, error = None, None, outcome.error
        values += (outcome.run_id, outcome.event, new, etag, outcome.status, error)
    return values


@functools.cache
def _rows(row: str, count: int, first: int, width: int) -> str:
    """``count`` copies of ``row``, its ``{}`` numbered from ``first`` on, ``width`` a row."""
    fields = row.count("{}")
    starts = range(first, first + count * width, width)
    return ", ".join(row.format(*range(start, start + fields)) for start in starts)


def _run_row(row: Sequence[Any]) -> RunRow:
    names = RunRow.__slots__
    return RunRow(**dict(zip(names, row, strict=True)))


def check_schema(db: Db, location: HistoryLocation, *, write: bool) -> bool:
    """Create the schema (``write``) and refuse a newer one; False when there is none."""
    if write:
        with db.transaction():
            if location.url is not None:  # concurrent CREATE TABLE IF NOT EXISTS can race
                db.execute("SELECT pg_advisory_xact_lock(7165390)", {})
            for statement in _SCHEMA:
                db.execute(statement, {"version": str(SCHEMA_VERSION)})
    else:
        exists = (
            "SELECT to_regclass('bulkretry_schema') IS NOT NULL"
            if location.url is not None
            else "SELECT count(*) FROM sqlite_master WHERE name = 'bulkretry_schema'"
        )
        if not db.execute(exists, {})[0][0]:
            return False
    rows = db.execute("SELECT value FROM bulkretry_schema WHERE key = 'version'", {})
    version = int(rows[0][0]) if rows else SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise UsageError(
            f"history {location} has schema version {version}, newer than this bulkretry "
            f"knows ({SCHEMA_VERSION}): upgrade bulkretry, or pass another --history"
        )
    return True


def claim(
    db: Db, claims: Sequence[Claim], shared: dict[str, Any], *, ahead: bool = False
) -> set[str]:
    """Claim each of ``claims`` by the policy in ``shared``: the run IDs granted.

    ``ahead``: claims made before their requests, plain inserts that take no existing row.
    """
    tail = _AHEAD_TAIL if ahead else _CLAIM_TAIL
    granted: set[str] = set()
    for part in _parts(sorted(claims, key=lambda claim: claim.run_id)):
        granted |= _claim_batch(db, part, shared, tail)
    return granted


def give_back(db: Db, run_ids: Sequence[str], shared: dict[str, Any]) -> None:
    """Undo claims made ahead that no request used: their rows, still this job's intents."""
    head = [shared[name] for name in _CLAIM_SHARED]
    for ids in _parts(sorted(set(run_ids))):
        marks = _rows("?{}", len(ids), len(head) + 1, 1)
        db.change(_UNUSED.format(marks), [*head, *ids])


def settle(db: Db, outcomes: Sequence[Settled], shared: dict[str, Any]) -> None:
    """Record ``outcomes`` (a run's last one counts) and the new runs' lineage."""
    latest = {outcome.run_id: outcome for outcome in outcomes}
    known = [shared[name] for name in _OUTCOME_SHARED]
    for part in _parts([latest[run_id] for run_id in sorted(latest)]):
        _settle(db, part, known)


def row(db: Db, key: dict[str, str], run_id: str) -> Any | None:  # noqa: ANN401 - a row
    """The fields ``verdict`` reads, for one run; None when the history has not seen it."""
    found = db.execute(_ROW, {**key, "run_id": run_id})
    return found[0] if found else None


def record_finished(db: Db, values: dict[str, Any]) -> None:
    """A new run's end, in a transaction of its own."""
    with db.transaction():
        db.execute(_FINISHED, values)


def runs(
    db: Db, key: dict[str, str], *, pending: bool = False, run_ids: Sequence[str] | None = None
) -> list[RunRow]:
    """The runs of an org and sandbox: all, the ``pending`` ones (oldest first), or some."""
    sql, values = _RUNS, dict(key)
    if pending:
        sql += " AND run_status = 'pending' ORDER BY created_at"
    if run_ids is not None:
        if not run_ids:
            return []
        sql += f" AND run_id IN ({', '.join(f':id{n}' for n in range(len(run_ids)))})"
        values |= {f"id{n}": run_id for n, run_id in enumerate(run_ids)}
    return [_run_row(found) for found in db.execute(sql, values)]
