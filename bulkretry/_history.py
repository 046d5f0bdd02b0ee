"""The recovery history: every re-trigger bulkretry makes, kept across jobs.

One table, ``bulkretry_runs``, keyed by (org, sandbox, run_id), in SQLite (stdlib ``sqlite3``)
or PostgreSQL (psycopg 3, the ``postgres`` extra). A row is a run bulkretry has claimed, or
one it created by a re-trigger (its lineage: parent, original, generation; and, once someone
followed it, its final status). Every call runs off the event loop, one at a time on the
connection: in anyio's threads, or in the history's writer process (``_history_writer``),
which has no loop and commits with ``commit_now``. The SQL itself is in ``_history_sql``.

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
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread

from . import _history_sql as sql
from ._database import REPLACED, Db, connect_pg, connect_sqlite, mapped
from ._errors import HistoryError
from ._history_location import HistoryLocation
from ._lineage import Chain, Claim, ClaimPolicy, Lineage, RunRow, chains_of, verdict
from ._outcomes import Outcome, Settled, Uncertain

T = TypeVar("T")


def now_iso(when: datetime | None = None) -> str:
    """A fixed-width UTC timestamp: sorts as text in both databases, reads well in a shell."""
    when = when or datetime.now(UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


Pair = tuple[str, str | None]
"""A claim as a ledger queues it and the writer's pipe carries it: run ID, flow ID."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupCommit:
    """What one group commit writes: outcomes, claims made ahead, the ones given back, claims."""

    outcomes: Sequence[Settled] = ()
    claims: Sequence[Claim] = ()
    ahead: Sequence[Claim] = ()
    """Claims made before their requests: plain inserts, winning only for runs never seen."""
    unused: Sequence[str] = ()
    """Claims made ahead that no request used: undone."""

    @classmethod
    def of(
        cls,
        outcomes: Sequence[Settled],
        claims: Sequence[Pair],
        ahead: Sequence[Pair],
        unused: Sequence[str],
    ) -> Self:
        """A group commit whose claims come as (run ID, flow ID) pairs, as a ledger queues them."""

        def claimed(pairs: Sequence[Pair]) -> list[Claim]:
            return [Claim(run_id=run_id, flow_id=flow_id) for run_id, flow_id in pairs]

        return cls(outcomes=outcomes, claims=claimed(claims), ahead=claimed(ahead), unused=unused)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    """What a group commit answers: per claim, and which claims made ahead lost."""

    claims: list[Outcome | None]
    """Per claim, in order: None when it is ours (send), else the outcome instead."""
    lost: frozenset[str] = frozenset()
    """The claims made ahead that did not win (the run was not new): each needs its own."""


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
        db = _connect(location, write=True, create=False)
        history = cls(db, location, org, sandbox, owner=owner)
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

    async def _call(self, work: Callable[[Db], T], empty: T, *, group: bool = False) -> T:
        if self._db is None:  # nothing to read (a dry run's missing file): no thread hop
            return empty
        run = functools.partial(self._run, work, empty, group=group)
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    def _run(self, work: Callable[[Db], T], empty: T, *, group: bool = False) -> T:
        """In a thread: one transaction at a time on the connection, whichever thread asks.

        ``work`` is one transaction, run again whole when PostgreSQL picks it as a deadlock's
        victim. A ``group`` commit is not: its statements commit one by one, each retried
        alone (``Db.change``); and any failure of it, a bug too, is a ``HistoryError``.
        """
        with self._lock:
            db = self._db
            if db is None:
                return empty
            with mapped(self.location, everything=group):
                return work(db) if group else db.retrying(lambda: work(db))

    def checkpointer(self) -> Callable[[threading.Event], None] | None:
        """What checkpoints a SQLite history from a thread of its own while a job writes."""
        with self._lock, mapped(self.location):
            return self._db.checkpointer() if self._db is not None else None

    async def commit(self, group: GroupCommit, policy: ClaimPolicy) -> Answers:
        """Record the outcomes, undo the unused claims made ahead, claim (a group commit).

        Answers, per claim, None when it is ours (the request may leave) or the outcome that
        replaces the request; and which of the claims made ahead lost. Raises
        ``HistoryError`` when it fails in any way (a bug too). Each statement touches rows in run ID
        order; a PostgreSQL deadlock is retried (every statement can run twice: a claim
        already ours is found by its owner and time).
        """
        return await self._call(self._committer(group, policy), Answers(claims=[]), group=True)

    def commit_now(self, group: GroupCommit, policy: ClaimPolicy) -> Answers:
        """``commit``, in the calling thread (the writer process has no event loop)."""
        return self._run(self._committer(group, policy), Answers(claims=[]), group=True)

    def _committer(self, group: GroupCommit, policy: ClaimPolicy) -> Callable[[Db], Answers]:
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

        def work(db: Db) -> Answers:
            db.still_there()
            sql.settle(db, group.outcomes, shared)
            won = sql.claim(db, group.ahead, shared, ahead=True)
            sql.give_back(db, group.unused, shared)
            granted = sql.claim(db, group.claims, shared)
            answers = [
                None if claim.run_id in granted else self._refusal(db, claim, shared, policy)
                for claim in group.claims
            ]
            lost = frozenset(claim.run_id for claim in group.ahead) - won  # usually none
            return Answers(claims=answers, lost=lost)

        return work

    def _refusal(
        self, db: Db, claim: Claim, shared: dict[str, Any], policy: ClaimPolicy
    ) -> Outcome | None:
        """Why a claim lost; or None when it wins on a second try, its holder being dead."""
        row = sql.row(db, self._key, claim.run_id)
        refusal = verdict(claim.run_id, row, policy, shared["now"])
        gone = row[7] if refusal is None and row and row[0] == "intent" else None
        if gone and sql.claim(db, [claim], shared | {"gone": gone}):
            return None  # a crashed job's claim, on this host
        return refusal or Uncertain(
            run_id=claim.run_id, status=None, error="claimed by another job just now", attempts=0
        )

    async def peek(self, run_id: str, policy: ClaimPolicy) -> Outcome | None:
        """What a claim would say, without writing (``--dry-run``): None means it would send."""
        row = await self._call(lambda db: sql.row(db, self._key, run_id), None)
        return verdict(run_id, row, policy, now_iso())

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

        await self._call(lambda db: sql.record_finished(db, values), None)

    async def pending(self) -> list[RunRow]:
        """Runs bulkretry created whose end nobody has recorded yet, oldest first."""
        return await self._call(lambda db: sql.runs(db, self._key, pending=True), [])

    async def lineage(self, run_ids: Sequence[str]) -> dict[str, Lineage]:
        """Generation, original and whether it was re-triggered, for the run IDs known here."""
        ids = list(dict.fromkeys(run_ids))

        def work(db: Db) -> dict[str, Lineage]:
            return {
                row.run_id: Lineage(
                    generation=row.generation,
                    original_run_id=row.original_run_id,
                    retriggered=row.state == "retriggered",
                )
                for row in sql.runs(db, self._key, run_ids=ids)
            }

        return await self._call(work, {})

    async def chains(self, *, since: datetime | None, flow_ids: Sequence[str]) -> list[Chain]:
        """One line per original run claimed here, with the latest run of its chain.

        ``since`` keeps chains re-triggered (or claimed) at or after it; ``flow_ids`` (when
        given) keeps those flows.
        """
        rows: list[RunRow] = await self._call(lambda db: sql.runs(db, self._key), [])
        return chains_of(rows, now_iso(since) if since else None, frozenset(flow_ids))


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
            present = sql.check_schema(db, location, write=write)
        except BaseException:
            db.close()
            raise
        if not present:  # read only, and nothing written yet: an empty history
            db.close()
            return None
        return db
