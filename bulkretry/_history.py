"""The recovery history: every re-trigger bulkretry makes, kept across jobs. All SQL lives here.

One table, ``bulkretry_runs``, keyed by (org, sandbox, run_id), in SQLite (stdlib ``sqlite3``)
or PostgreSQL (psycopg 3, the ``postgres`` extra). A row is a run bulkretry has claimed, or
one it created by a re-trigger (its lineage: parent, original, generation; and, once someone
followed it, its final status). Every call runs off the event loop, one at a time on the
connection: in anyio's threads, or in the history's writer process (``_history_writer``),
which has no loop and commits with ``commit_now``.

A claim is one ``INSERT … ON CONFLICT … DO UPDATE … WHERE``: the database, not a read before
the write, decides who may send, so concurrent jobs on one history (processes, hosts)
re-trigger a run at most once. A group commit is a handful of multi-row statements, whatever
its size, each its own transaction: each one is atomic, and a ``BEGIN`` and a ``COMMIT`` would
be two more trips through the driver. Their order makes a crash between two of them safe:
the new runs' lineage, then the outcomes (a new run recorded before its parent's outcome
leaves the parent an intent: ``uncertain``, never sent again), then the claims made ahead,
the ones given back, and the claims (their count of rows written says whether all won; only
when not is a second statement needed). An intent carries its owner and a lease; a live
job's in-flight claim is never taken over, not even by ``--retry-uncertain`` or ``--again``.

A claim made ahead (``ahead``: the job claims the run IDs it has read before a worker needs
them, so that no request waits for a commit) is a plain insert: it wins only for a run the
history has never seen, whose claim is the same under every policy, and so a claim made
ahead that no request used is undone exactly, by deleting its row (``unused``). Any other
run is claimed as before, right before its request.

For follow-through (``--wait``, ``bulkretry status``)::

    async with await History.open(location, org=org, sandbox=sandbox) as history:
        for run in await history.pending():                  # new runs not yet finished
            await history.record_finished(run.run_id, status="success", records=10)
        chains = await history.chains(since=None, flow_ids=())  # one per original run
        counts = tally(chains, max_generations=3)              # per flow and error code
"""

from __future__ import annotations

import functools
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Self, TypeVar

import anyio
import anyio.to_thread

from ._database import REPLACED, Db, connect_pg, connect_sqlite, mapped
from ._errors import HistoryError, UsageError
from ._history_location import HistoryLocation
from ._lineage import Chain, Claim, ClaimPolicy, Lineage, RunRow, chains_of, verdict
from ._outcomes import Failed, Outcome, Retriggered, Uncertain

Settled = Retriggered | Failed | Uncertain

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


def now_iso(when: datetime | None = None) -> str:
    """A fixed-width UTC timestamp: sorts as text in both databases, reads well in a shell."""
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    """What a group commit answers: per claim, and which claims made ahead won."""

    claims: list[Outcome | None]
    """Per claim, in order: None when it is ours (send), else the outcome instead."""
    ahead: frozenset[str] = frozenset()
    """The run IDs claimed ahead that won; any other needs a claim of its own."""


class History:
    """One job's connection to the history, bound to an org and sandbox; async, thread-backed."""

    def __init__(
        self,
        db: Db | None,
        location: HistoryLocation,
        org: str,
        sandbox: str,
        *,
        owner: str | None = None,
    ) -> None:
        self._db = db
        self.location = location
        self.org, self.sandbox = org, sandbox
        self._key = {"org": org, "sandbox": sandbox}
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Who holds this job's claims: host, the job's process ID, a tag (``owner_gone``)."""
        self._limiter = anyio.CapacityLimiter(1)
        self._lock = threading.Lock()
        """The connection's: one transaction at a time, whichever thread asks."""

    def __repr__(self) -> str:
        return f"History({self.location})"

    @classmethod
    async def open(
        cls, location: HistoryLocation, *, org: str, sandbox: str, write: bool = True
    ) -> Self:
        """Connect, create or check the schema; ``UsageError`` (one line) when unusable.

        With ``write=False`` (a dry run) nothing is created: a missing file reads as empty.
        """
        opener = functools.partial(_connect, location, write=write)
        db = await anyio.to_thread.run_sync(opener, abandon_on_cancel=True)
        return cls(db, location, org, sandbox)

    @classmethod
    def open_now(
        cls,
        location: HistoryLocation,
        *,
        org: str,
        sandbox: str,
        owner: str,
        identity: tuple[int, int] | None,
    ) -> Self:
        """The job's history, again, for its writer process (no loop: in the calling thread).

        ``owner`` and ``identity`` are the job's: its claims, and the very file it opened (a
        SQLite file is never created here, nor one taken that replaced it since).
        """
        history = cls(_connect(location, write=True, create=False), location, org, sandbox)
        history.owner = owner
        if history.identity() != identity:
            history.close_now()
            raise HistoryError(location.failure(REPLACED))
        return history

    def identity(self) -> tuple[int, int] | None:
        """Which SQLite file this is (device, inode); None for PostgreSQL."""
        return self._db.identity if self._db is not None else None

    def close_now(self) -> None:
        """``aclose``, in the calling thread."""
        if self._db is not None:
            db, self._db = self._db, None
            self._close(db)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (whatever was committed stays)."""
        if self._db is not None:
            db, self._db = self._db, None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close, db, limiter=self._limiter)

    def _close(self, db: Db) -> None:
        with self._lock:
            db.close()

    async def _call(self, work: Callable[[Db], T], empty: T, *, whole: bool = True) -> T:
        if self._db is None:  # nothing to read (a dry run's missing file): no thread hop
            return empty
        run = functools.partial(self._run, work, empty, whole=whole)
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    def _run(self, work: Callable[[Db], T], empty: T, *, whole: bool = True) -> T:
        """In a thread: one transaction at a time on the connection, whichever thread asks.

        ``whole``: ``work`` is one transaction, run again whole when PostgreSQL picks it as a
        deadlock's victim. A group commit is not (its statements commit one by one, and
        each is retried alone: ``Db.change``).
        """
        with self._lock:
            db = self._db
            if db is None:
                return empty
            with mapped(self.location):
                return db.retrying(lambda: work(db)) if whole else work(db)

    def checkpointer(self) -> Callable[[threading.Event], None] | None:
        """What checkpoints a SQLite history from a thread of its own while a job writes."""
        with self._lock, mapped(self.location):
            return self._db.checkpointer() if self._db is not None else None

    async def commit(
        self,
        outcomes: Sequence[Settled],
        claims: Sequence[Claim],
        policy: ClaimPolicy,
        *,
        ahead: Sequence[Claim] = (),
        unused: Sequence[str] = (),
    ) -> Answers:
        """Record ``outcomes``, undo ``unused`` claims made ahead, claim (a group commit).

        Answers, per claim, None when it is ours (the request may leave) or the outcome that
        replaces the request; and which of the claims made ``ahead`` won. Raises
        ``HistoryError`` when the database fails. Each statement touches rows in run ID
        order; a PostgreSQL deadlock is retried (every statement can run twice: a claim
        already ours is found by its owner and time).
        """
        work = self._committer(outcomes, claims, policy, ahead=ahead, unused=unused)
        return await self._call(work, Answers(claims=[]), whole=False)

    def commit_now(
        self,
        outcomes: Sequence[Settled],
        claims: Sequence[Claim],
        policy: ClaimPolicy,
        *,
        ahead: Sequence[Claim] = (),
        unused: Sequence[str] = (),
    ) -> Answers:
        """``commit``, in the calling thread (the writer process has no event loop)."""
        work = self._committer(outcomes, claims, policy, ahead=ahead, unused=unused)
        return self._run(work, Answers(claims=[]), whole=False)

    def _committer(
        self,
        outcomes: Sequence[Settled],
        claims: Sequence[Claim],
        policy: ClaimPolicy,
        *,
        ahead: Sequence[Claim],
        unused: Sequence[str],
    ) -> Callable[[Db], Answers]:
        now = datetime.now(UTC)
        stamp, lease = now_iso(now), now_iso(now + timedelta(seconds=policy.lease_s))
        shared = {
            **self._key,
            "owner": self.owner,
            "lease_until": lease,
            "now": stamp,
            "max_generations": policy.max_generations,
            "again": int(policy.again),
            "retry_uncertain": int(policy.retry_uncertain),
            "gone": "",
        }
        known = [shared[name] for name in _OUTCOME_SHARED]
        latest = {outcome.run_id: outcome for outcome in outcomes}  # the last one counts
        settled = [latest[run_id] for run_id in sorted(latest)]
        early = sorted(ahead, key=lambda claim: claim.run_id)
        undone = sorted(set(unused))
        wanted = sorted(claims, key=lambda claim: claim.run_id)

        def work(db: Db) -> Answers:
            db.still_there()
            for some in _parts(settled):
                _settle(db, some, known)
            won: set[str] = set()
            for early_part in _parts(early):
                won |= _claim_batch(db, early_part, shared, _AHEAD_TAIL)
            for ids in _parts(undone):
                marks = _rows("?{}", len(ids), len(_CLAIM_SHARED) + 1, 1)
                db.change(_UNUSED.format(marks), [*(shared[n] for n in _CLAIM_SHARED), *ids])
            granted: set[str] = set()
            for part in _parts(wanted):
                granted |= _claim_batch(db, part, shared, _CLAIM_TAIL)
            answers = [
                None if claim.run_id in granted else self._refusal(db, claim, shared, policy)
                for claim in claims
            ]
            return Answers(claims=answers, ahead=frozenset(won))

        return work

    def _refusal(
        self, db: Db, claim: Claim, shared: dict[str, Any], policy: ClaimPolicy
    ) -> Outcome | None:
        """Why a claim lost; or None when it wins on a second try, its holder being dead."""
        row = db.execute(_ROW, {**self._key, "run_id": claim.run_id})
        stamp = shared["now"]
        refusal = verdict(claim.run_id, row[0] if row else None, policy, stamp)
        gone = row[0][7] if refusal is None and row and row[0][0] == "intent" else None
        if gone and _claim_batch(db, [claim], shared | {"gone": gone}, _CLAIM_TAIL):
            return None  # a crashed job's claim, on this host
        return refusal or Uncertain(
            run_id=claim.run_id, status=None, error="claimed by another job just now", attempts=0
        )

    async def peek(self, run_id: str, policy: ClaimPolicy) -> Outcome | None:
        """What a claim would say, without writing (``--dry-run``): None means it would send."""
        rows: list[Any] = await self._call(
            lambda db: db.execute(_ROW, {**self._key, "run_id": run_id}), []
        )
        return verdict(run_id, rows[0] if rows else None, policy, now_iso())

    async def record_finished(  # noqa: PLR0913 - one run's fate, each field named
        self,
        run_id: str,
        *,
        status: str,
        records: int | None = None,
        error: str | None = None,
        flow_id: str | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Record the final ``status`` (success, failed, …) of a run bulkretry created."""
        values: dict[str, Any] = {**self._key, "run_id": run_id, "flow_id": flow_id}
        values["run_status"] = status
        values |= {"records": records, "run_error": error, "finished_at": now_iso(finished_at)}

        def work(db: Db) -> None:
            with db.transaction():
                db.execute(_FINISHED, values)

        await self._call(work, None)

    async def pending(self) -> list[RunRow]:
        """Runs bulkretry created whose end nobody has recorded yet, oldest first."""
        sql = _RUNS + " AND run_status = 'pending' ORDER BY created_at"
        return await self._call(lambda db: [_run_row(r) for r in db.execute(sql, self._key)], [])

    async def lineage(self, run_ids: Sequence[str]) -> dict[str, Lineage]:
        """Generation, original and whether it was re-triggered, for the run IDs known here."""
        ids = list(dict.fromkeys(run_ids))
        marks = ", ".join(f":id{n}" for n in range(len(ids)))
        sql = _RUNS + f" AND run_id IN ({marks})"
        values = self._key | {f"id{n}": run_id for n, run_id in enumerate(ids)}

        def work(db: Db) -> dict[str, Lineage]:
            rows = [_run_row(row) for row in db.execute(sql, values)] if ids else []
            return {
                row.run_id: Lineage(
                    generation=row.generation,
                    original_run_id=row.original_run_id,
                    retriggered=row.state == "retriggered",
                )
                for row in rows
            }

        return await self._call(work, {})

    async def chains(self, *, since: datetime | None, flow_ids: Sequence[str]) -> list[Chain]:
        """One line per original run claimed here, with the latest run of its chain.

        ``since`` keeps chains re-triggered (or claimed) at or after it; ``flow_ids`` (when
        given) keeps those flows.
        """
        rows: list[RunRow] = await self._call(
            lambda db: [_run_row(r) for r in db.execute(_RUNS, self._key)], []
        )
        return chains_of(rows, now_iso(since) if since else None, frozenset(flow_ids))


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


def _connect(location: HistoryLocation, *, write: bool, create: bool = True) -> Db | None:
    """Open and check the database; every failure is one ``UsageError`` line."""
    with mapped(location, usage=True):
        if location.url:
            db: Db | None = Db(connect_pg(location))
        else:
            db = connect_sqlite(location, write=write, create=create)
        if db is None:
            return None
        try:
            present = _check_schema(db, location, write=write)
        except BaseException:
            db.close()
            raise
        if not present:  # read only, and nothing written yet: an empty history
            db.close()
            return None
        return db


def _check_schema(db: Db, location: HistoryLocation, *, write: bool) -> bool:
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
