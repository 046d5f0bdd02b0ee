"""Following re-triggered runs to their end: ``retry --wait``.

Downstream of the pipeline: each ``retriggered`` outcome hands its new run here, and a
dispatcher asks ``GET /runs/{new_run_id}`` when the run is due, through the job's
admission gate and the one attempt loop, less often the longer the run takes. Each run is
in the schedule or in flight, never both, so it is asked at most once per poll round.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._attempts import Attempts, Gate, Interrupter, Policy
from ._errors import BulkRetryError, UsageError
from ._outcomes import Finished, FinishStatus
from ._polls import ENDED, is_missing, poll

if TYPE_CHECKING:
    from ._flowservice import FlowService
    from ._runs import RunState

_log = logging.getLogger(__name__)

DEFAULT_WAIT_TIMEOUT: Final = 21600.0
REFUSALS_TO_STOP: Final = 3
"""Polls refused in a row (401, gateway 403) after which the follower stops asking."""
MISSING_TO_STOP: Final = 5
"""Polls of one run answered 404 in a row after which it is given up (about 35 s at first)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cadence:
    """How long to leave a running run alone: ``first`` at the start, then a share of its age.

    With the defaults a run is asked about 5, 10, 15, 22.5, 34 … seconds after its
    re-trigger, and at most every ``cap`` seconds once it has run for ten minutes: a run of
    a few seconds costs one or two polls, a run of six hours about ninety.
    """

    first: float = 5.0
    growth: float = 0.5
    cap: float = 300.0

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.cap and math.isfinite(self.cap) and self.growth >= 0):
            raise UsageError("--poll-interval must be above 0")

    @classmethod
    def starting_at(cls, first: float) -> Cadence:
        """The default shape, scaled: first poll after ``first`` s, at most every ``60 * first``."""
        return cls(first=first, cap=60 * first)

    def delay(self, age: float) -> float:
        """Seconds until the next poll of a run re-triggered ``age`` seconds ago."""
        return min(self.cap, max(self.first, self.growth * age))


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowSettings:
    """``--wait``: how long to follow each new run, counted from its re-trigger, and how often."""

    timeout: float = DEFAULT_WAIT_TIMEOUT
    cadence: Cadence = field(default_factory=Cadence)

    def __post_init__(self) -> None:
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise UsageError("--wait-timeout must be above 0")


@dataclass(slots=True)
class _Run:
    """One new run being followed; ``started`` and ``deadline`` are on the follower's clock."""

    run_id: str
    new_run_id: str
    started: float
    deadline: float
    missing: int = 0  # polls answered 404 in a row


Emit = Callable[[Finished], Awaitable[None]]


class Follower:
    """Polls new runs until they end or time out; ``emit`` gets one ``Finished`` per run.

    ``follow`` adds a run, ``close`` says no more will come; ``run`` returns once every run
    followed has ended or been given up, or as soon as ``stopper`` stops (runs still going
    are then left in ``pending``, with no line). A run is given up, ``timed-out`` since its
    end is unknown, at its deadline, after ``MISSING_TO_STOP`` polls answered 404 in a row,
    or once polls were refused ``REFUSALS_TO_STOP`` times in a row (``refused`` says why):
    then no run is asked about again, and each, followed already or later, gets its line.
    """

    def __init__(  # noqa: PLR0913 - the job's collaborators, each small
        self,
        client: FlowService,
        settings: FollowSettings,
        *,
        policy: Policy,
        gate: Gate,
        stopper: Interrupter,
        workers: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._settings = settings
        self._policy = policy
        self._gate = gate
        self._stopper = stopper
        self._workers = workers
        self._clock = clock
        self._due: list[tuple[float, int, _Run]] = []
        self._order = itertools.count()
        self._in_flight = 0
        self._closed = False
        self._wake = anyio.Event()
        self._refusals = 0
        self.refused: str | None = None

    @property
    def pending(self) -> int:
        """Runs followed that have not ended (nor timed out) yet."""
        return len(self._due) + self._in_flight

    def follow(self, run_id: str, new_run_id: str) -> None:
        """Start following ``new_run_id``, the re-trigger of ``run_id``, from now."""
        now = self._clock()
        run = _Run(run_id, new_run_id, now, now + self._settings.timeout)
        self._schedule(run, now)

    def close(self) -> None:
        """No more runs will be followed: ``run`` returns once the last one ends."""
        self._closed = True
        self._wake.set()

    async def run(self, emit: Emit) -> None:
        """Poll due runs with ``workers`` pollers until all have ended, or the job stops."""
        # Room for every poller: the dispatcher hands a run on only to an idle poller, so
        # handing on never waits, and a stop never leaves a run half handed on.
        send, receive = anyio.create_memory_object_stream[_Run](self._workers)
        async with anyio.create_task_group() as pollers:
            for _ in range(self._workers):
                pollers.start_soon(self._poller, receive.clone(), emit)
            receive.close()
            async with send:
                await self._dispatch(send, emit)

    async def _dispatch(self, send: MemoryObjectSendStream[_Run], emit: Emit) -> None:
        while not self._stopper.stopped:
            while self.refused is not None and self._due and not self._stopper.stopped:
                run = heapq.heappop(self._due)[2]
                await emit(_finished(run, "timed-out", None, self._clock(), error=self.refused))
            if not self._due or self._in_flight >= self._workers:
                if not self._due and self._closed and not self._in_flight:
                    return
                await self._nap(None)
                continue
            due, _, run = self._due[0]
            now = self._clock()
            if due > now:
                await self._nap(due - now)
                continue
            heapq.heappop(self._due)
            if now >= run.deadline:
                await emit(_finished(run, "timed-out", None, now))
                continue
            self._in_flight += 1
            send.send_nowait(run)

    async def _nap(self, seconds: float | None) -> None:
        """Sleep until ``seconds`` pass, a run is added or ends, or the job stops."""
        self._wake = anyio.Event()
        with self._stopper.interruptible(), anyio.move_on_after(seconds):
            await self._wake.wait()

    async def _poller(self, runs: MemoryObjectReceiveStream[_Run], emit: Emit) -> None:
        async with runs:
            async for run in runs:
                attempts = Attempts(self._policy, gate=self._gate, stopper=self._stopper)
                given_up = None
                try:
                    state = await poll(self._client, attempts, run.new_run_id)
                    self._refusals, run.missing = 0, 0
                except BulkRetryError as refusal:
                    state, given_up = None, self._count(run, refusal)
                now = self._clock()
                if given_up is not None:
                    await emit(_finished(run, "timed-out", None, now, error=given_up))
                elif state is not None and state.status in ENDED:
                    ended: FinishStatus = "success" if state.status == "success" else "failed"
                    await emit(_finished(run, ended, state, now))
                else:
                    self._schedule(run, now)
                self._in_flight -= 1
                self._wake.set()

    def _count(self, run: _Run, refusal: BulkRetryError) -> str | None:
        """Count a poll refused or answered 404; why to give ``run`` up, once it is time."""
        if not is_missing(refusal):
            self._count_refusal(refusal)
            return None
        self._refusals = 0  # the gateway let the caller through
        run.missing += 1
        return str(refusal) if run.missing >= MISSING_TO_STOP else None  # the API's words

    def _count_refusal(self, refusal: BulkRetryError) -> None:
        self._refusals += 1
        if self._refusals >= REFUSALS_TO_STOP and self.refused is None:
            self.refused = f"polls refused {self._refusals} times in a row ({refusal})"
            _log.error(
                "%s: not following the other runs; 'bulkretry status --refresh' asks later",
                self.refused,
            )

    def _schedule(self, run: _Run, now: float) -> None:
        """Next poll after the cadence's delay, but no later than the run's deadline."""
        due = min(now + self._settings.cadence.delay(now - run.started), run.deadline)
        heapq.heappush(self._due, (due, next(self._order), run))
        self._wake.set()


def _finished(
    run: _Run, status: FinishStatus, state: RunState | None, now: float, *, error: str | None = None
) -> Finished:
    """The run's line; ``error`` says why a run whose end is unknown was given up."""
    return Finished(
        run_id=run.run_id,
        new_run_id=run.new_run_id,
        status=status,
        records=state.records if state is not None else 0,
        error=state.error if state is not None and status == "failed" else error,
        duration_s=round(now - run.started, 3),
    )
