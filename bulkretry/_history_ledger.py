"""The history as a ledger: claims and outcomes queued meanwhile share one commit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from ._errors import HistoryError
from ._history import History
from ._ledger import Settled
from ._lineage import Claim, ClaimPolicy
from ._outcomes import Finished, Outcome

GROUP = 16
"""Claims that go to a commit at once; fewer wait one turn of the event loop for company."""


@dataclass(slots=True)
class _Waiter:
    claim: Claim
    done: anyio.Event = field(default_factory=anyio.Event)
    answer: Outcome | None = None
    error: HistoryError | None = None


class HistoryLedger:
    """The history, with group commits: claims and outcomes queued meanwhile share one commit.

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
        self._claims: list[_Waiter] = []
        self._outcomes: list[Settled] = []
        self._wake = anyio.Event()
        self._failure: HistoryError | None = None
        self._busy = anyio.Lock()

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        if self._failure is not None:
            raise self._failure
        waiter = _Waiter(Claim(run_id=run_id, flow_id=flow_id))
        self._claims.append(waiter)
        self._wake.set()
        with anyio.CancelScope(shield=True):  # a claim in a commit is decided either way
            await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.answer

    async def peek(self, run_id: str) -> Outcome | None:
        if self._failure is not None:
            raise self._failure
        return await self._history.peek(run_id, self._policy)

    def record(self, outcome: Settled) -> None:
        if self._failure is not None:
            raise self._failure
        self._outcomes.append(outcome)
        self._wake.set()

    def release(self, run_id: str, instead: Outcome) -> None:
        """Never needed: the history is the last ledger asked."""
        del run_id, instead

    async def serve(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._claims) < GROUP:  # workers admitted in the same turn join the group
                await anyio.lowlevel.checkpoint()
            self._wake = anyio.Event()
            await self._commit()

    async def flush(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._busy:  # a commit under way finishes first
                pass
            while self._outcomes or self._claims:
                await self._commit()

    async def finished(self, line: Finished) -> None:
        """Record the new run's end (its lineage may still be in the queue: order is free)."""
        if line.status == "timed-out" or self._failure is not None:
            return  # still pending: ``status --refresh`` asks again later
        try:
            await self._history.record_finished(
                line.new_run_id, status=line.status, records=line.records, error=line.error
            )
        except HistoryError as error:
            self._failure = error
            self._on_failure(str(error))

    async def _commit(self) -> None:
        async with self._busy:
            waiters, self._claims = self._claims, []
            outcomes, self._outcomes = self._outcomes, []
            if not waiters and not outcomes:
                return
            try:
                if self._failure is not None:
                    raise self._failure
                claims = [waiter.claim for waiter in waiters]
                answers = await self._history.commit(outcomes, claims, self._policy)
            except HistoryError as error:
                if self._failure is None:
                    self._failure = error
                    self._on_failure(str(error))
                for waiter in waiters:
                    waiter.error = self._failure
                    waiter.done.set()
                return
            for waiter, answer in zip(waiters, answers, strict=True):
                waiter.answer = answer
                waiter.done.set()
