"""The history as a ledger: one writer thread, claims and outcomes queued meanwhile share a commit.

The writer commits back to back, never waiting for the event loop: while one commit is under
way the next batch fills, so under load a batch holds every claim made during the previous
commit, and when idle a claim is written at once. One ``call_soon_threadsafe`` per commit
wakes every worker whose claim it carried. The job runs on asyncio (aiohttp needs it), so the
writer reaches the loop through asyncio directly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from ._errors import HistoryError
from ._history import History
from ._ledger import Settled
from ._lineage import Claim, ClaimPolicy
from ._outcomes import Finished, Outcome


@dataclass(slots=True)
class _Batch:
    """The claims one commit carries, and the one event that wakes all their workers."""

    claims: list[Claim] = field(default_factory=list)
    answers: list[Outcome | None] = field(default_factory=list)
    error: HistoryError | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


class HistoryLedger:
    """The history, with group commits by a writer thread that ``serve`` runs.

    A worker's claim waits for the commit that carries it (the intent is in the database
    before the request leaves); an outcome does not wait, it rides with the next commit.
    """

    def __init__(
        self,
        history: History,
        policy: ClaimPolicy,
        *,
        on_failure: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._history = history
        self._policy = policy
        self._on_failure = on_failure
        self._failure: HistoryError | None = None
        # Shared with the writer thread, under ``_queue``:
        self._queue = threading.Condition(threading.Lock())
        self._next: _Batch | None = None
        """The batch the writer takes next (None: nothing to write)."""
        self._outcomes: list[Settled] = []
        self._writing: _Batch | None = None
        self._idle = False
        self._stopping = False

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        """Join the next commit and wait for it.

        Not shielded: a worker cancelled meanwhile leaves the commit to go on without it; a
        granted intent then stays without an outcome (``uncertain`` later, as after ``kill -9``).
        """
        if self._failure is not None:
            raise self._failure
        with self._queue:
            batch = self._batch()
            index = len(batch.claims)
            batch.claims.append(Claim(run_id=run_id, flow_id=flow_id))
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.answers[index]

    async def peek(self, run_id: str) -> Outcome | None:
        if self._failure is not None:
            raise self._failure
        return await self._history.peek(run_id, self._policy)

    def record(self, outcome: Settled) -> None:
        if self._failure is not None:
            raise self._failure
        with self._queue:
            self._outcomes.append(outcome)
            self._batch()

    def release(self, run_id: str, instead: Outcome) -> None:
        """Never needed: the history is the last ledger asked."""
        del run_id, instead

    async def serve(self) -> None:
        """Run the writer thread until cancelled; it writes what is queued, then ends."""
        loop = asyncio.get_running_loop()
        ended = anyio.Event()

        def writer() -> None:
            try:
                self._write(loop)
            finally:
                loop.call_soon_threadsafe(ended.set)

        self._stopping = False
        threading.Thread(target=writer, name="bulkretry-history", daemon=True).start()
        try:
            await anyio.sleep_forever()
        finally:
            with self._queue:
                self._stopping = True
                self._queue.notify()
            with anyio.CancelScope(shield=True):
                await ended.wait()

    async def flush(self) -> None:
        """Wait for the commit that carries every outcome recorded so far.

        After a failure the job has been told already and nothing more is written: return,
        whether or not the writer has let go of the failed batch yet.
        """
        if self._failure is not None:
            return
        with self._queue:
            last = self._writing if self._next is None and not self._outcomes else self._batch()
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
        """The batch being filled (under ``_queue``), waking the writer for a new one."""
        if self._next is None:
            self._next = _Batch()
            if self._idle:
                self._queue.notify()
        return self._next

    def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        """The writer thread, and beside it the checkpoints (SQLite) until it ends."""
        stop = threading.Event()
        try:
            checkpoints = self._history.checkpointer()
        except HistoryError:
            checkpoints = None  # the first commit will say what is wrong
        thread = None
        if checkpoints is not None:
            thread = threading.Thread(target=checkpoints, args=(stop,), daemon=True)
            thread.start()
        try:
            self._commits(loop)
        finally:
            stop.set()
            if thread is not None:
                thread.join()

    def _commits(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take what is queued, commit it, hand the answers to the loop; until stopped."""
        broken: HistoryError | None = None
        while True:
            with self._queue:
                self._writing = None
                while self._next is None and not self._stopping:
                    self._idle = True
                    self._queue.wait()
                    self._idle = False
                batch, self._next = self._next, None
                outcomes, self._outcomes = self._outcomes, []
                if batch is None:
                    return
                self._writing = batch
            if broken is None:  # after a failure nothing more is written: the job stops
                try:
                    batch.answers = self._history.commit_now(outcomes, batch.claims, self._policy)
                except HistoryError as error:
                    broken = error
                except Exception as error:  # noqa: BLE001 - every waiter hears it, none hangs
                    broken = self._unexpected(error)
            batch.error = broken
            try:
                loop.call_soon_threadsafe(self._answer, batch)
            except RuntimeError:  # the loop is gone (torn down): nobody waits any more
                return

    def _unexpected(self, error: Exception) -> HistoryError:
        """Any other failure of a commit stops the job the same way, in one line."""
        return HistoryError(self._history.location.failure(f"{type(error).__name__}: {error}"))

    def _answer(self, batch: _Batch) -> None:
        """On the loop: wake the batch's workers; a failure stops the job."""
        if batch.error is not None:
            self._fail(batch.error)
        batch.done.set()

    def _fail(self, error: HistoryError) -> None:
        if self._failure is None:
            self._failure = error
            self._on_failure(str(error))
