"""Intent before send, outcome after: the one interface the pipeline talks to.

Three places keep that promise: the JSON-lines journal (one job, resumable), and the
history in SQLite or PostgreSQL (every job, across hosts). The pipeline sees a ``Ledger``:
``claim`` before a request leaves (None: send; otherwise the outcome that replaces the
request), ``record`` once the outcome is known, ``peek`` to look without claiming (before
waiting for ``--rate``, and for a dry run). ``Ledgers`` chains
them, so ``--journal`` and the history work together.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._errors import HistoryError, JournalError, UsageError
from ._history import History
from ._journal import Journal, JournalIndex
from ._lineage import Claim, ClaimPolicy
from ._outcomes import Failed, Finished, Outcome, Retriggered, Skipped, Uncertain
from ._settings import JobSettings

_log = logging.getLogger(__name__)

Settled = Retriggered | Failed | Uncertain

GROUP = 16
"""Claims that go to a commit at once; fewer wait one turn of the event loop for company."""

_NOT_APPLIED_ON_RESUME = "journal has an intent with no outcome: the request may have been applied"


class Ledger(Protocol):
    """Where intents and outcomes go; raises ``JournalError`` when it cannot keep them."""

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        """Make the intent durable before a request; None: send, else the outcome instead."""

    def record(self, outcome: Settled) -> None:
        """The outcome of an attempt (the last one recorded is the run's)."""

    async def peek(self, run_id: str) -> Outcome | None:
        """What ``claim`` would answer, writing no intent (before admission, and ``--dry-run``)."""

    def release(self, run_id: str, instead: Outcome) -> None:
        """A later ledger refused the claim this one granted: record what happened instead."""

    async def serve(self) -> None:
        """Background work (grouped fsync or commits) until cancelled."""

    async def flush(self) -> None:
        """Make every recorded outcome durable (at the end of the job)."""

    async def finished(self, line: Finished) -> None:
        """``--wait``: how a new run ended (a ``timed-out`` one is still pending)."""


class JournalLedger:
    """The journal: resume rules from the index read at start, records appended at once."""

    def __init__(
        self, journal: Journal | None, index: JournalIndex, *, retry_uncertain: bool
    ) -> None:
        self._journal = journal
        self._index = index
        self._retry_uncertain = retry_uncertain

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        del flow_id
        earlier = await self.peek(run_id)
        if earlier is None and self._journal is not None:
            self._journal.intent(run_id)
        return earlier

    async def peek(self, run_id: str) -> Outcome | None:
        record = self._index.get(run_id)
        if record is None:
            return None
        if record.state == "retriggered":
            new_run_id = record.new_run_id or ""
            return Skipped(
                run_id=run_id,
                reason="already-retriggered",
                new_run_id=new_run_id,
                etag=record.etag,
            )
        if record.state == "failed" or self._retry_uncertain:
            return None
        error = record.error or _NOT_APPLIED_ON_RESUME
        return Uncertain(run_id=run_id, status=record.status, error=error, attempts=0)

    def record(self, outcome: Settled) -> None:
        if self._journal is not None:
            self._journal.outcome(outcome)

    def release(self, run_id: str, instead: Outcome) -> None:
        """Write what the history knows; a run it skipped is "failed" here: tried next time."""
        if self._journal is None:
            return
        if isinstance(instead, Skipped) and instead.reason == "already-retriggered":
            new_run_id = instead.new_run_id or ""
            self._journal.outcome(
                Retriggered(
                    run_id=run_id, new_run_id=new_run_id, etag=instead.etag, attempts=0, status=0
                )
            )
        elif isinstance(instead, Uncertain):
            self._journal.outcome(instead)
        else:
            error = f"not sent: {instead.event}"
            self._journal.outcome(Failed(run_id=run_id, status=None, error=error, attempts=0))

    async def serve(self) -> None:
        if self._journal is not None:
            await self._journal.sync_forever()

    async def flush(self) -> None:
        """Nothing to do: every record reached the OS when it was written."""

    async def finished(self, line: Finished) -> None:
        """The journal keeps re-triggers only; how new runs end is the history's."""


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


class Ledgers:
    """Several ledgers as one: a claim must be granted by each, in order (journal, history)."""

    def __init__(self, ledgers: Sequence[Ledger]) -> None:
        self._ledgers = tuple(ledgers)

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        granted: list[Ledger] = []
        for ledger in self._ledgers:
            instead = await ledger.claim(run_id, flow_id)
            if instead is not None:
                for earlier in granted:
                    earlier.release(run_id, instead)
                return instead
            granted.append(ledger)
        return None

    async def peek(self, run_id: str) -> Outcome | None:
        """A later ledger's answer is released to the earlier ones, as a refused claim is.

        A dry run writes nothing even so: its journal is opened read-only.
        """
        for n, ledger in enumerate(self._ledgers):
            if (instead := await ledger.peek(run_id)) is not None:
                for earlier in self._ledgers[:n]:
                    earlier.release(run_id, instead)
                return instead
        return None

    def record(self, outcome: Settled) -> None:
        failure: JournalError | None = None
        for ledger in self._ledgers:
            try:
                ledger.record(outcome)
            except JournalError as error:  # the others still get it
                failure = failure or error
        if failure is not None:
            raise failure

    def release(self, run_id: str, instead: Outcome) -> None:
        for ledger in self._ledgers:
            ledger.release(run_id, instead)

    async def serve(self) -> None:
        async with anyio.create_task_group() as tasks:
            for ledger in self._ledgers:
                tasks.start_soon(ledger.serve)

    async def flush(self) -> None:
        for ledger in self._ledgers:
            await ledger.flush()

    async def finished(self, line: Finished) -> None:
        for ledger in self._ledgers:
            await ledger.finished(line)


LEASE_MARGIN = 60.0
"""Seconds an intent outlives its request's timeout before another job may call it stale."""


def lease_seconds(settings: JobSettings) -> float:
    """How long a claim holds off other jobs: everything that may happen under it.

    The request (``--timeout``), and, when the API refuses the ``op`` spelling, a wait for
    ``--rate`` behind at most ``--concurrency`` others and the resend (another timeout).
    """
    queue = settings.concurrency / settings.rate if settings.rate else 0.0
    return 2 * settings.timeout + queue + LEASE_MARGIN


async def open_ledger(
    stack: AsyncExitStack,
    settings: JobSettings,
    key: tuple[str, str] | None,
    on_failure: Callable[[str], None],
) -> Ledger | None:
    """The job's ledgers, opened and checked (``UsageError`` before any request), or None.

    ``key`` is the (org, sandbox) the history is kept under; ``on_failure`` hears why the
    history failed mid-job, so that the job stops.
    """
    ledgers: list[Ledger] = []
    if settings.journal is not None:
        journal = None if settings.dry_run else stack.enter_context(Journal(settings.journal))
        index = await _load_index(settings.journal)
        stack.callback(index.close)
        _log.info("journal %s: %d run IDs recorded earlier", settings.journal, len(index))
        ledgers.append(JournalLedger(journal, index, retry_uncertain=settings.retry_uncertain))
    if settings.history is not None:
        if key is None:
            raise UsageError("a history is keyed by org and sandbox: set AEP_ORG_ID or --org")
        org, sandbox = key
        write = not settings.dry_run
        history = await History.open(settings.history, org=org, sandbox=sandbox, write=write)
        stack.push_async_callback(history.aclose)
        policy = ClaimPolicy(
            max_generations=settings.max_generations,
            again=settings.again,
            retry_uncertain=settings.retry_uncertain,
            lease_s=lease_seconds(settings),  # the claim is made as its request leaves
        )
        ledgers.append(HistoryLedger(history, policy, on_failure=on_failure))
    if not ledgers:
        return None
    return ledgers[0] if len(ledgers) == 1 else Ledgers(ledgers)


async def _load_index(path: Path) -> JournalIndex:
    """Read the journal in a thread: the event loop (and its signal handlers) stays free."""
    stop = threading.Event()
    try:
        return await anyio.to_thread.run_sync(
            functools.partial(JournalIndex.load, path, stop), abandon_on_cancel=True
        )
    finally:
        stop.set()  # a stopped start-up abandons the thread; this ends it
