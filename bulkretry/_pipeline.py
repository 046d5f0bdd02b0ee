"""The job: input → bounded stream → admission → N workers → outcomes, in one task group.

A producer validates and deduplicates; workers own a run ID from its claim in the ledger
(journal, history) to its final outcome. Every run ID read produces exactly one outcome,
including when the job is stopped part-way (``_stopper``; ``_streams`` hands items on
without losing one).
"""

from __future__ import annotations

import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from contextlib import aclosing
from typing import TYPE_CHECKING, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._admission import Admission
from ._attempts import Attempts, Decision, Failure, GaveUp, NotSent, Policy, refuses_the_caller
from ._backoff import Backoff
from ._dedup import SeenIds
from ._errors import BulkRetryError, JournalError
from ._ledger import Ledger
from ._outcomes import Failed, Outcome, Planned, Retriggered, Settled, Skipped, Uncertain
from ._settings import JobSettings
from ._sources import check_run_id
from ._stopper import Stopper
from ._streams import _aiter, send_without_loss

if TYPE_CHECKING:  # at run time only a real job loads aiohttp, not a dry run
    from ._flowservice import Accepted, FlowService

_log = logging.getLogger(__name__)

Emit = Callable[[Outcome], Awaitable[None]]
"""Where outcomes go: awaited once per run ID, by the producer and by the workers."""

FATAL_AFTER: Final = 3
"""Consecutive refusals of the caller (401, gateway 403) after which nothing more is sent."""
READ_AHEAD: Final = 4
"""Run IDs read ahead of the workers, per worker, at ``--rate 0`` (1 when paced): the history
claims them meanwhile, and a group commit's time is covered when each worker has a few."""


class Pipeline:
    """One job's state: what has been seen, the gate, and the fail-fast breaker."""

    def __init__(
        self,
        settings: JobSettings,
        client: FlowService | None,
        *,
        ledger: Ledger | None = None,
        backoff: Backoff | None = None,
        stopper: Stopper | None = None,
    ) -> None:
        if client is None and not settings.dry_run:
            raise ValueError("a client is required unless dry_run is set")
        self.settings = settings
        self.stopper = stopper or Stopper()
        self._client = client
        self._ledger = ledger
        self._policy = Policy(
            limit=settings.max_attempts,
            refreshable=client is not None and client.tokens.refreshable,
            retry_uncertain=settings.retry_uncertain,
            backoff=backoff or Backoff(),
        )
        self._admission = Admission(settings.rate)
        self._seen = SeenIds()
        self._refusals = 0
        self._fatal: str | None = None

    @property
    def admission(self) -> Admission:
        """The job's gate; polls of new runs (``--wait``) pass it too, so ``--rate`` counts them."""
        return self._admission

    async def run(
        self,
        items: AsyncIterable[str | Skipped] | Iterable[str | Skipped],
        emit: Emit,
    ) -> None:
        """Feed every item through; ``emit`` gets one outcome per run ID read."""
        concurrency = self.settings.concurrency
        ahead = READ_AHEAD if self.settings.rate == 0 else 1  # claims ahead need no pacing
        work_send, work_receive = anyio.create_memory_object_stream[str](ahead * concurrency)
        async with anyio.create_task_group() as background:
            if self._ledger is not None:
                background.start_soon(self._ledger.serve)
            async with anyio.create_task_group() as workers:
                sending = 0 if self.settings.dry_run else concurrency
                for _ in range(sending):
                    workers.start_soon(self._worker, work_receive.clone(), emit)
                work_receive.close()
                async with work_send, aclosing(_aiter(items)) as source:
                    await self._produce(source, work_send, emit)
            if self._ledger is not None:
                try:
                    await self._ledger.flush()
                except JournalError as error:
                    self.stopper.stop(str(error))
            background.cancel_scope.cancel()

    async def _produce(
        self,
        items: AsyncIterator[str | Skipped],
        work: MemoryObjectSendStream[str],
        emit: Emit,
    ) -> None:
        # A stop cancels the wait for more input. An item already read is never lost: it is
        # handed on without waiting when there is room, and under a shield when there is not.
        with self.stopper.interruptible():
            try:
                async for item in items:
                    outcome = await self._screen(item)
                    if outcome is None:
                        assert isinstance(item, str)  # screened: a valid, new run ID
                        self._claim_ahead(item)
                        await send_without_loss(work, item)
                    else:
                        await emit(outcome)
            except BulkRetryError as error:  # input that fails mid-stream: finish what was read
                self.stopper.stop(str(error))

    async def _screen(self, item: str | Skipped) -> Outcome | None:
        """The outcome that needs no request, or None when the run ID should be sent."""
        if isinstance(item, Skipped):
            return item
        checked = check_run_id(item)
        if isinstance(checked, Skipped):
            return checked
        if not self._seen.add(item):
            return Skipped(run_id=item, reason="duplicate")
        if self.settings.dry_run:
            earlier = await self._ledger.peek(item) if self._ledger is not None else None
            return earlier or Planned(run_id=item)
        if self.stopper.stopped:
            return Skipped(run_id=item, reason="interrupted")
        return None

    def _claim_ahead(self, run_id: str) -> None:
        """With nothing to wait for (``--rate 0``), let the ledger claim a run while it queues.

        The commit then happens while the workers send, not while one of them waits for it.
        A run that waits for ``--rate`` is claimed as it leaves: the claim is its request's.
        """
        if self._ledger is not None and self._admission.free:
            self._ledger.ahead(str(run_id), getattr(run_id, "flow_id", None))

    async def _worker(self, work: MemoryObjectReceiveStream[str], emit: Emit) -> None:
        async with work:
            async for run_id in work:
                outcome = await self._settle(run_id)
                if self._ledger is not None:
                    self._ledger.unused(str(run_id))  # e.g. interrupted before its request
                await emit(outcome)

    async def _settle(self, item: str) -> Outcome:
        """Attempt ``item`` until it has a final outcome."""
        client = self._client
        assert client is not None
        run_id, flow_id = str(item), getattr(item, "flow_id", None)

        # A read-only look first, when admission would make the run wait: a run the ledger
        # settles already costs no slot of --rate (and a claim made ahead is given back).
        # The claim itself is made after admission, right before each attempt: a run that
        # waits for --rate when the job is killed has left no intent behind.
        # Read before the stop and not sent: ``_worker`` gives back a claim made ahead.
        if self.stopper.stopped:
            return Skipped(run_id=run_id, reason="interrupted")
        ledger = self._ledger
        instead = await self._peek(ledger, run_id) if ledger is not None else None
        if instead is not None:
            return instead

        async def send() -> Accepted:
            nonlocal instead
            if self._fatal is not None:
                raise NotSent  # a tripped breaker: no request
            if ledger is not None:
                instead = await self._claim(ledger, run_id, flow_id)
                if instead is not None:
                    raise NotSent  # no durable intent, or another job has it now
            # A resend with the other op spelling waits its turn like any request.
            return await client.retrigger(run_id, admit=self._admission.wait)

        attempts = Attempts(
            self._policy,
            gate=self._admission,
            stopper=self.stopper,
            ready=self._unbroken,
            on_failure=lambda failure: self._failed_attempt(run_id, failure),
        )
        try:
            accepted = await attempts.run(send)
        except GaveUp as end:
            return self._gave_up(run_id, end.failure, instead)
        self._refusals = 0
        return self._record_outcome(
            Retriggered(
                run_id=run_id,
                new_run_id=accepted.new_run_id,
                etag=accepted.etag,
                attempts=attempts.made,
                status=accepted.status,
            )
        )

    def _unbroken(self) -> bool:
        """A tripped breaker answers at once, with no wait for admission."""
        return self._fatal is None

    def _gave_up(self, run_id: str, failure: Failure | None, instead: Outcome | None) -> Outcome:
        """The outcome of a run whose attempts ended without an accepted answer."""
        if instead is not None and _settled_elsewhere(instead):
            return instead  # the ledger's word on a later attempt (another job sent it)
        if failure is not None:  # stopped between attempts, or a final failure
            return _failure_outcome(run_id, failure)
        if self._fatal is not None:
            return Failed(
                run_id=run_id, status=None, error=f"not attempted: {self._fatal}", attempts=0
            )
        return instead or Skipped(run_id=run_id, reason="interrupted")

    async def _peek(self, ledger: Ledger, run_id: str) -> Outcome | None:
        """What the ledgers say already, writing nothing: None when the run may be tried."""
        if self._admission.free:
            return None  # nothing to wait for: the claim right away is the look (one query)
        try:
            return await ledger.peek(run_id)
        except JournalError as error:
            self.stopper.stop(str(error))
            return Skipped(run_id=run_id, reason="interrupted")

    async def _claim(self, ledger: Ledger, run_id: str, flow_id: str | None) -> Outcome | None:
        """Intent before send: None when the ledgers hold a durable intent and it may go.

        Otherwise what replaces the request: the ledger's answer (already re-triggered,
        uncertain, generation limit), or ``interrupted`` when the intent could not be kept
        (and the job stops: nothing is sent without a durable intent).
        """
        try:
            return await ledger.claim(run_id, flow_id)
        except JournalError as error:
            self.stopper.stop(str(error))
            return Skipped(run_id=run_id, reason="interrupted")

    def _record_outcome(self, outcome: Settled) -> Outcome:
        """Outcome after: a ledger that fails stops the job; the outcome stands."""
        if self._ledger is not None:
            try:
                self._ledger.record(outcome)
            except JournalError as error:  # the outcome is still reported; nothing more is sent
                self.stopper.stop(str(error))
        return outcome

    def _failed_attempt(self, run_id: str, failure: Failure) -> None:
        """Record a failed attempt's outcome and tell the breaker about refusals.

        Recorded at once: a crash before the next attempt finds the run settled.
        """
        if failure.decision is Decision.REFUSED:
            self._count_refusal(refuses_the_caller(failure.error), failure.describe())
        outcome = _failure_outcome(run_id, failure)
        if not failure.decision.final:
            _log.debug(
                "%s: attempt %d failed (%s); next in %.2fs",
                run_id,
                failure.attempts,
                outcome.error,
                failure.wait,
            )
        self._record_outcome(outcome)

    def _count_refusal(self, job_wide: bool, text: str) -> None:  # noqa: FBT001 - a fact, not a flag
        """Trip the breaker after repeated refusals of the caller: the rest would be refused too."""
        if job_wide:
            self._refusals += 1
            if self._refusals >= FATAL_AFTER and self._fatal is None:
                self._fatal = f"the job stopped after {self._refusals} refusals in a row ({text})"
                _log.error("%s; no further request will be sent", self._fatal)
        else:
            self._refusals = 0


def _settled_elsewhere(outcome: Outcome) -> bool:
    """A ledger's refusal that says something about the run, not about the ledger failing."""
    return not (isinstance(outcome, Skipped) and outcome.reason == "interrupted")


def _failure_outcome(run_id: str, failure: Failure) -> Failed | Uncertain:
    """``uncertain`` once any attempt may have been applied, else ``failed``.

    A later safe failure must not turn a maybe-applied run into "failed", which a resume
    would send again.
    """
    kind = Uncertain if failure.maybe_applied else Failed
    return kind(
        run_id=run_id,
        status=failure.status,
        error=failure.describe(),
        attempts=failure.attempts,
    )
