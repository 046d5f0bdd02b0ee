"""Asking the API how one run is doing: shared by ``retry --wait`` and ``status --refresh``.

A poll is a ``GET /runs/{id}`` through the job's admission gate and the one attempt loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import anyio

from ._attempts import Attempts, Gate, GaveUp, Interrupter, Policy, refuses_the_caller
from ._backoff import Backoff
from ._errors import APIError, BulkRetryError
from ._runs import RunState, run_in_answer

if TYPE_CHECKING:
    from ._flowservice import FlowService
    from ._history import History

_log = logging.getLogger(__name__)

ENDED: Final = frozenset({"success", "failed"})
"""Final statuses of a run; anything else (``inProgress``, ``queued``, …) is still going."""


def poll_policy(*, limit: int, refreshable: bool, backoff: Backoff) -> Policy:
    """Polls' policy: a GET is safe to repeat, so even a lost answer is asked again."""
    return Policy(limit=limit, refreshable=refreshable, retry_uncertain=True, backoff=backoff)


async def poll(client: FlowService, attempts: Attempts, new_run_id: str) -> RunState | None:
    """Ask once (with the attempt loop's retries) how ``new_run_id`` is doing; None: no answer.

    Raises the error when the API refused the caller (401, a gateway 403): asking about
    another run would be refused alike; and a 404, which the caller counts (``is_missing``).
    """
    try:
        page: Any = await attempts.run(lambda: client.get_json(f"/runs/{quote(new_run_id, '')}"))
    except GaveUp as end:
        error = end.failure.error if end.failure is not None else None
        if error is not None and (refuses_the_caller(error) or is_missing(error)):
            raise error from None
        _log.info("run %s: no answer this round (%s)", new_run_id, end)
        return None
    state = run_in_answer(page, new_run_id)
    if state is None:
        _log.info("run %s: the answer does not show this run yet", new_run_id)
    return state


def is_missing(error: BulkRetryError) -> bool:
    """Whether a poll was answered 404: the API does not know the run (yet, or at all)."""
    return isinstance(error, APIError) and error.status == 404


async def refresh_pending(  # noqa: PLR0913 - the collaborators of one pass, keyword-only
    client: FlowService,
    history: History,
    *,
    policy: Policy,
    gate: Gate,
    stopper: Interrupter | None = None,
    workers: int,
) -> int:
    """``status --refresh``: ask once about each run the history has as pending; record ends.

    Paced by ``gate`` like any job; returns how many runs were found ended.
    """
    pending = iter(await history.pending())
    ended = 0

    async def poller() -> None:
        nonlocal ended
        for row in pending:  # shared: each run goes to one poller
            if stopper is not None and stopper.stopped:
                return
            attempts = Attempts(policy, gate=gate, stopper=stopper)
            try:
                state = await poll(client, attempts, row.run_id)
            except BulkRetryError as error:
                if not is_missing(error):
                    raise
                continue  # still pending: a later refresh asks again
            if state is not None and state.status in ENDED:
                ended += 1
                await history.record_finished(
                    row.run_id,
                    status=state.status,
                    records=state.records,
                    error=state.error if state.status == "failed" else None,
                    flow_id=state.flow_id,
                )

    async with anyio.create_task_group() as pollers:
        for _ in range(workers):
            pollers.start_soon(poller)
    return ended
