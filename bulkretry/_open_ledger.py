"""Opening a job's ledgers: the journal and the history, checked before any request."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio.to_thread

from ._errors import UsageError
from ._history import History
from ._history_commits import WRITER_AFTER
from ._history_ledger import HistoryLedger
from ._journal import Journal, JournalIndex
from ._journal_ledger import JournalLedger
from ._ledger import Ledger, Ledgers
from ._lineage import ClaimPolicy
from ._settings import JobSettings

_log = logging.getLogger(__name__)


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
    *,
    writer_after: int = WRITER_AFTER,
) -> Ledger | None:
    """The job's ledgers, opened and checked (``UsageError`` before any request), or None.

    ``key`` is the (org, sandbox) the history is kept under; ``on_failure`` hears why the
    history failed mid-job, so that the job stops; ``writer_after`` claims move its commits
    to the history's writer process.
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
            lease_s=lease_seconds(settings),  # claimed as its request leaves, or just before
        )
        ledger = HistoryLedger(history, policy, on_failure=on_failure, writer_after=writer_after)
        ledgers.append(ledger)
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
