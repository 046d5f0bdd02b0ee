"""The history as a ledger: group commits by a writer process, claims made ahead of the workers.

Everything here runs on the event loop. Claims and outcomes queue in the next batch; one
batch at a time is committed (``_history_commits``: by the job's own connection, then by the
writer process), back to back, so under load a batch holds everything queued during the
previous commit, and when idle a claim is written at once. A batch's one event wakes every
worker whose claim it carried.

Claims made ahead (``ahead``, as the producer hands a run ID to the workers) ride the next
commit too, so that at ``--rate 0`` a worker finds its claim committed instead of waiting for
it; one that no request used is given back (``unused``), in a later commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import anyio

from ._errors import HistoryError
from ._history import GroupCommit, History, Pair
from ._history_commits import WRITER_AFTER, Committer
from ._lineage import ClaimPolicy
from ._outcomes import Finished, Outcome, Settled

_log = logging.getLogger(__name__)

AHEAD_FRESH_S: Final = 30.0
"""How long a claim made ahead may wait for its worker: half the lease's 60 s margin, so the
request still has all of its own lease. An older one is made anew (another job may have
taken it over once its lease ran out)."""


@dataclass(slots=True)
class _Batch:
    """What one commit carries, and the one event that wakes all the workers it answers."""

    claims: list[Pair] = field(default_factory=list)
    ahead: list[Pair] = field(default_factory=list)
    answers: list[Outcome | None] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)
    """The claims made ahead that did not win (the run was not new to the history)."""
    error: HistoryError | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    committed: float = 0.0
    """When its commit began (``time.monotonic``): its leases run from then."""


class HistoryLedger:
    """The history, with the group commits that ``serve`` runs.

    A worker's claim waits for the commit that carries it (the intent is in the database
    before the request leaves); an outcome does not wait, it rides with the next commit.
    """

    def __init__(
        self,
        history: History,
        policy: ClaimPolicy,
        *,
        on_failure: Callable[[str], None] = lambda _: None,
        writer_after: int = WRITER_AFTER,
    ) -> None:
        self._history = history
        self._writer_after = writer_after
        self._policy = policy
        self._fresh_s = min(AHEAD_FRESH_S, policy.lease_s / 4)
        """How long a claim made ahead may wait for its worker under this lease."""
        self._on_failure = on_failure
        self._failure: HistoryError | None = None
        self._next: _Batch | None = None
        """The batch the writer takes next (None: nothing to write)."""
        self._outcomes: list[Settled] = []
        self._unused: list[str] = []
        self._writing: _Batch | None = None
        self._queued = anyio.Event()
        """Set when something is queued for a writer that waits."""
        self._ahead: dict[str, _Batch] = {}
        """Claims made ahead and not used yet, and the commits that carry them."""

    def ahead(self, run_id: str, flow_id: str | None) -> None:
        """Claim ``run_id`` in the next commit, before a worker needs it (nothing waits)."""
        if self._failure is None and run_id not in self._ahead:
            batch = self._batch()
            batch.ahead.append((run_id, flow_id))
            self._ahead[run_id] = batch

    def unused(self, run_id: str) -> None:
        """A claim made ahead that no request used: undo it (the next job may send the run)."""
        self._give_back(run_id)

    def _give_back(self, run_id: str) -> _Batch | None:
        """Queue the undo of a claim made ahead; the commit that will carry it, if any."""
        batch = self._ahead.pop(run_id, None)
        if batch is None or (batch.done.is_set() and run_id in batch.lost):
            return None  # none made, or it lost: nothing of this job's to undo
        self._unused.append(run_id)
        return self._batch()

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        """Join the next commit and wait for it (a claim made ahead is usually done already).

        Not shielded: a worker cancelled meanwhile leaves the commit to go on without it; a
        granted intent then stays without an outcome (``uncertain`` later, as after ``kill -9``).
        """
        if self._failure is not None:
            raise self._failure
        early = self._ahead.pop(run_id, None)
        if early is not None:
            if not early.done.is_set():
                await early.done.wait()
            if early.error is not None:
                self._unused.append(run_id)  # not sent: given back, if it was ever made
                raise early.error
            if run_id not in early.lost:
                if time.monotonic() - early.committed <= self._fresh_s:
                    return None
                self._unused.append(run_id)  # too old: given back and made anew, one commit
            # Not new to the history, or waited too long: claimed now, like any other run.
        batch = self._batch()
        index = len(batch.claims)
        batch.claims.append((run_id, flow_id))
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.answers[index]

    async def peek(self, run_id: str) -> Outcome | None:
        """A claim made ahead is given back first: a run that waits for ``--rate`` holds none."""
        if self._failure is not None:
            raise self._failure
        undo = self._give_back(run_id)
        if undo is not None:
            await undo.done.wait()
            if undo.error is not None:
                raise undo.error
        return await self._history.peek(run_id, self._policy)

    def record(self, outcome: Settled) -> None:
        if self._failure is not None:
            raise self._failure
        self._outcomes.append(outcome)
        self._batch()

    def release(self, run_id: str, instead: Outcome) -> None:
        """Never needed: the history is the last ledger asked."""
        del run_id, instead

    async def serve(self) -> None:
        """Commit what is queued until cancelled; then write what is left, and end."""
        async with anyio.create_task_group() as starting:
            writer = Committer(self._history, self._policy, starting, after=self._writer_after)
            try:
                await self._commits(writer)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._commits(writer, until_idle=True)
                    await writer.aclose()
                    await self._give_back_stranded()

    async def flush(self) -> None:
        """Wait for the commit that carries every outcome recorded so far.

        After a failure the job has been told already and nothing more is written: return.
        """
        if self._failure is not None:
            return
        last = self._next or self._writing
        if last is not None:
            with anyio.CancelScope(shield=True):
                await last.done.wait()
            if last.error is not None:
                raise last.error  # the outcomes it carried are not in the history

    async def finished(self, line: Finished) -> None:
        """Record the new run's end (its lineage may still be in the queue: order is free)."""
        if line.status == "timed-out" or self._failure is not None:
            return  # still pending: ``status --refresh`` asks again later
        try:
            await self._history.record_finished(
                line.new_run_id, status=line.status, records=line.records, error=line.error
            )
        except HistoryError as error:
            self._fail(error)

    def _batch(self) -> _Batch:
        """The batch being filled, waking the writer for a new one."""
        if self._next is None:
            self._next = _Batch()
            self._queued.set()
        return self._next

    async def _commits(self, writer: Committer, *, until_idle: bool = False) -> None:
        """Take what is queued, commit it, wake its workers; until cancelled (or idle)."""
        while True:
            batch = self._next
            if batch is None:
                if until_idle:
                    return
                self._queued = anyio.Event()
                await self._queued.wait()
                continue
            self._next, self._writing = None, batch
            outcomes, self._outcomes = self._outcomes, []
            unused, self._unused = self._unused, []
            stamped = time.monotonic()  # no later than the leases this commit gives
            if self._failure is None:  # after a failure nothing more is written: the job stops
                try:
                    with anyio.CancelScope(shield=True):  # a message half sent is no message
                        batch.answers, batch.lost = await writer.commit(
                            outcomes, batch.claims, batch.ahead, unused
                        )
                except HistoryError as error:
                    self._fail(error)
            if self._failure is not None:  # kept for the last try, at the end
                self._unused = unused + self._unused
            batch.error = self._failure
            batch.committed = stamped
            self._writing = None
            batch.done.set()

    async def _give_back_stranded(self) -> None:
        """After a failure, one last try to give back the claims made ahead and never used.

        The job printed those runs ``interrupted``: the next one should send them. When it
        was the writer process that failed, the job's own connection may still work (a
        claim the failed commit never wrote is no row to delete); when the database itself
        failed, this fails too, and those runs are ``uncertain`` next time.
        """
        if self._failure is None or not self._unused:
            return
        try:
            await self._history.commit(GroupCommit(unused=self._unused), self._policy)
        except HistoryError as error:
            _log.debug("claims made ahead not given back (%s)", error)

    def _fail(self, error: HistoryError) -> None:
        if self._failure is None:
            self._failure = error
            self._on_failure(str(error))
