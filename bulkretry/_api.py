"""The typed async API: what the CLI uses, and what a Python caller can use instead.

async with bulkretry.retrigger(run_ids, api, JobSettings(rate=5)) as job:
    async for outcome in job:
        ...

async with bulkretry.list_failed(api, ListingSettings(flow_ids=("...",))) as lister:
    async for record in lister.records():
        ...
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._admission import Admission
from ._api_settings import ApiSettings
from ._backoff import Backoff
from ._discovery import Lister, ListingSettings
from ._follow import Follower, FollowSettings
from ._ledger import Ledger
from ._open_ledger import open_ledger
from ._outcomes import Finished, Line, Retriggered, Skipped
from ._pipeline import Pipeline
from ._polls import poll_policy, refresh_pending
from ._settings import JobSettings
from ._stopper import Stopper
from ._streams import send_without_loss

if TYPE_CHECKING:
    from ._flowservice import FlowService
    from ._history import History

_OUT_BUFFER = 256
_log = logging.getLogger(__name__)


class RetriggerJob:
    """A running job: iterate it for outcomes (or await ``wait``), ``stop()`` it gracefully."""

    def __init__(
        self,
        outcomes: MemoryObjectReceiveStream[Line] | None,
        stopper: Stopper,
        client: FlowService | None,
        done: anyio.Event,
    ) -> None:
        self._outcomes = outcomes
        self._stopper = stopper
        self._client = client
        self._done = done

    def __aiter__(self) -> AsyncIterator[Line]:
        if self._outcomes is None:
            raise TypeError("this job delivers outcomes to on_outcome; await job.wait() instead")
        return self._outcomes.__aiter__()

    async def wait(self) -> None:
        """Return when every run ID read has had its outcome (``on_outcome`` jobs only)."""
        if self._outcomes is not None:
            raise TypeError("iterate this job for its outcomes; wait() is for on_outcome jobs")
        await self._done.wait()

    def stop(self) -> None:
        """Send nothing new; in-flight requests finish and every run ID still gets an outcome."""
        self._stopper.stop()

    @property
    def failure(self) -> str | None:
        """Why the job stopped itself (unwritable journal, unreadable input), if it did."""
        return self._stopper.failure

    def secrets(self) -> tuple[str, ...]:
        """Secret values in use, so that output can be scrubbed of them."""
        return self._client.tokens.secrets() if self._client is not None else ()


@asynccontextmanager
async def retrigger(  # noqa: PLR0913 - the options after * are keyword-only, each optional
    run_ids: AsyncIterable[str | Skipped] | Iterable[str | Skipped],
    api: ApiSettings | None,
    settings: JobSettings | None = None,
    *,
    on_outcome: Callable[[Line], object] | None = None,
    follow: FollowSettings | None = None,
    backoff: Backoff | None = None,
    history_key: tuple[str, str] | None = None,
) -> AsyncIterator[RetriggerJob]:
    """Re-trigger ``run_ids``; yields a job that gives one outcome per run ID read.

    Iterate the job for outcomes, or pass ``on_outcome`` to have each one handed to a
    function (plain or async: an async one holds its worker back until it returns) as
    soon as it is known, and ``await job.wait()``; the CLI does this: no stream between.
    With ``follow`` (``--wait``) each new run is polled to its end and a ``Finished``
    follows its ``Retriggered``.
    Raises ``AuthError`` before any re-trigger when no token can be had,
    ``JournalLockedError`` when another process holds the journal, and ``UsageError`` when
    the history cannot be used. The history is keyed by ``history_key`` (org, sandbox),
    by default ``api``'s.
    """
    settings = settings or JobSettings()
    backoff = backoff or Backoff()
    if history_key is None and api is not None:
        history_key = (api.org_id, api.sandbox)
    async with AsyncExitStack() as stack:
        stopper = Stopper()
        ledger = await open_ledger(stack, settings, history_key, stopper.stop)
        client = None
        if not settings.dry_run:
            from ._flowservice import FlowService, make_tokens, open_session  # noqa: PLC0415 - a dry run never loads aiohttp

            if api is None:
                raise ValueError("api settings are required unless dry_run is set")
            session = await stack.enter_async_context(
                open_session(settings.concurrency, settings.timeout)
            )
            tokens = make_tokens(session, api, attempts=settings.max_attempts, backoff=backoff)
            await tokens.token()  # fail before the first re-trigger, not during it
            client = FlowService(session, api, tokens)
        pipeline = Pipeline(settings, client, ledger=ledger, backoff=backoff, stopper=stopper)
        done = anyio.Event()
        send, receive = anyio.create_memory_object_stream[Line](_OUT_BUFFER)
        if on_outcome is not None:
            receive.close()
        emit = _emitter(send, on_outcome)
        follower = None
        if follow is not None and client is not None:
            policy = poll_policy(
                limit=settings.max_attempts, refreshable=client.tokens.refreshable, backoff=backoff
            )
            follower = Follower(
                client,
                follow,
                policy=policy,
                gate=pipeline.admission,
                stopper=stopper,
                workers=settings.concurrency,
            )

        async def run() -> None:
            async with send:
                if follower is None:
                    await pipeline.run(run_ids, emit)
                else:
                    async with anyio.create_task_group() as following:
                        following.start_soon(follower.run, _then_record(emit, ledger))
                        await pipeline.run(run_ids, _then_follow(emit, follower))
                        follower.close()
            done.set()

        async with anyio.create_task_group() as tasks, receive:
            tasks.start_soon(run)
            yield RetriggerJob(None if on_outcome else receive, stopper, client, done)
            if not done.is_set() and on_outcome is None:
                tasks.cancel_scope.cancel()  # the caller stopped iterating early


def _then_record(
    emit: Callable[[Line], Awaitable[None]], ledger: Ledger | None
) -> Callable[[Finished], Awaitable[None]]:
    """Write each ``finished`` line, then keep the new run's end in the history."""

    async def emit_and_record(line: Finished) -> None:
        await emit(line)
        if ledger is not None:
            await ledger.finished(line)

    return emit_and_record


def _then_follow(
    emit: Callable[[Line], Awaitable[None]], follower: Follower
) -> Callable[[Line], Awaitable[None]]:
    """Write each line, then follow the new run of a ``retriggered`` one (``--wait``)."""

    async def emit_and_follow(outcome: Line) -> None:
        await emit(outcome)  # the old → new map is out before any wait
        if isinstance(outcome, Retriggered):
            follower.follow(outcome.run_id, outcome.new_run_id)

    return emit_and_follow


def _emitter(
    send: MemoryObjectSendStream[Line], on_outcome: Callable[[Line], object] | None
) -> Callable[[Line], Awaitable[None]]:
    """Where the pipeline's outcomes go: the job's stream, or the caller's handler."""
    if on_outcome is None:

        async def into_stream(outcome: Line) -> None:
            await send_without_loss(send, outcome)

        return into_stream

    if inspect.iscoroutinefunction(on_outcome):  # the CLI's: no layer between
        return cast("Callable[[Line], Awaitable[None]]", on_outcome)

    async def to_handler(outcome: Line) -> None:
        result = on_outcome(outcome)
        if inspect.isawaitable(result):  # an async handler may hold its worker back
            await result

    return to_handler


@asynccontextmanager
async def list_failed(
    api: ApiSettings, settings: ListingSettings, *, backoff: Backoff | None = None
) -> AsyncIterator[Lister]:
    """A lister over the flows in ``settings``; iterate ``lister.records()`` for retryable runs."""
    from ._flowservice import FlowService, make_tokens, open_session  # noqa: PLC0415 - see retrigger

    backoff = backoff or Backoff()
    concurrency = max(2, min(len(settings.flow_ids), 32))
    async with open_session(concurrency, settings.timeout) as session:
        tokens = make_tokens(session, api, attempts=settings.max_attempts, backoff=backoff)
        await tokens.token()
        async with Lister(FlowService(session, api, tokens), settings, backoff) as lister:
            yield lister


async def refresh(
    api: ApiSettings, history: History, settings: JobSettings, *, backoff: Backoff | None = None
) -> int:
    """Ask the API about every run ``history`` has as pending, and record those that ended.

    Paced and retried by ``settings`` like a re-trigger job; returns how many had ended.
    """
    from ._flowservice import FlowService, make_tokens, open_session  # noqa: PLC0415 - see retrigger

    backoff = backoff or Backoff()
    async with open_session(settings.concurrency, settings.timeout) as session:
        tokens = make_tokens(session, api, attempts=settings.max_attempts, backoff=backoff)
        await tokens.token()
        policy = poll_policy(
            limit=settings.max_attempts, refreshable=tokens.refreshable, backoff=backoff
        )
        return await refresh_pending(
            FlowService(session, api, tokens),
            history,
            policy=policy,
            gate=Admission(settings.rate),
            workers=settings.concurrency,
        )
