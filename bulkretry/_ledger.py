"""Intent before send, outcome after: the one interface the pipeline talks to.

Three places keep that promise: the JSON-lines journal (one job, resumable), and the
history in SQLite or PostgreSQL (every job, across hosts). The pipeline sees a ``Ledger``:
``claim`` before a request leaves (None: send; otherwise the outcome that replaces the
request), ``record`` once the outcome is known, ``peek`` to look without claiming (before
waiting for ``--rate``, and for a dry run). ``ahead`` lets a ledger claim a run ID before a
worker needs it (the history, at ``--rate 0``); ``unused`` gives such a claim back when no
request used it. ``Ledgers`` chains them, so ``--journal`` and the history work together.

The journal's ledger is in ``_journal_ledger``, the history's in ``_history_ledger``, and
``_open_ledger`` opens the ones a job asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import anyio

from ._errors import JournalError
from ._outcomes import Finished, Outcome, Settled


class Ledger(Protocol):
    """Where intents and outcomes go; raises ``JournalError`` when it cannot keep them."""

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        """Make the intent durable before a request; None: send, else the outcome instead."""

    def record(self, outcome: Settled) -> None:
        """The outcome of an attempt (the last one recorded is the run's)."""

    def ahead(self, run_id: str, flow_id: str | None) -> None:
        """A hint that ``run_id`` will be claimed soon: a ledger may claim it now, or not."""

    def unused(self, run_id: str) -> None:
        """``run_id`` is settled: undo a claim made ahead that no request used."""

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

    def ahead(self, run_id: str, flow_id: str | None) -> None:
        for ledger in self._ledgers:
            ledger.ahead(run_id, flow_id)

    def unused(self, run_id: str) -> None:
        for ledger in self._ledgers:
            ledger.unused(run_id)

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
