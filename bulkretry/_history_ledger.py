"""The history as a ledger: group commits by a writer process, claims made ahead of the workers.

Everything here runs on the event loop. Claims and outcomes queue in the next batch; the
writer process (``_history_writer``) commits one batch at a time, back to back, so under load
a batch holds everything queued during the previous commit, and when idle a claim is written
at once. A batch's one event wakes every worker whose claim it carried.

Claims made ahead (``ahead``, as the producer hands a run ID to the workers) ride the next
commit too, so that at ``--rate 0`` a worker finds its claim committed instead of waiting for
it; one that no request used is given back (``unused``), in a later commit.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from ._errors import HistoryError
from ._history import History
from ._history_writer import HEADER, Pair, frame, pack
from ._ledger import Settled
from ._lineage import Claim, ClaimPolicy
from ._outcomes import Finished, Outcome

_log = logging.getLogger(__name__)

WRITER_AFTER = 256
"""Claims after which a job's commits move to the writer process."""


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


class HistoryLedger:
    """The history, with group commits by the writer process that ``serve`` runs.

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
        if batch is None or (batch.done.is_set() and (run_id in batch.lost or batch.error)):
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
                raise early.error
            if run_id not in early.lost:
                return None
            # Not new to the history: claimed now, by the rules, like any other run.
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
            if self._failure is None:  # after a failure nothing more is written: the job stops
                try:
                    with anyio.CancelScope(shield=True):  # a message half sent is no message
                        batch.answers, batch.lost = await writer.commit(
                            outcomes, batch.claims, batch.ahead, unused
                        )
                except HistoryError as error:
                    self._fail(error)
            batch.error = self._failure
            self._writing = None
            batch.done.set()

    def _fail(self, error: HistoryError) -> None:
        if self._failure is None:
            self._failure = error
            self._on_failure(str(error))


class Committer:
    """Commits through the job's own connection until the writer process is ready, then there.

    The process starts once the job has claimed ``after`` runs: a small job never waits for
    it (nor pays for it), a large one hands its commits over a few hundred claims in.
    """

    def __init__(
        self, history: History, policy: ClaimPolicy, starting: TaskGroup, *, after: int
    ) -> None:
        self._history = history
        self._policy = policy
        self._starting = starting
        self._after = after
        self._claimed = 0
        self._process: Process | None = None
        self._answers: BufferedByteReceiveStream | None = None
        self._started = self._ready = False

    async def commit(
        self, outcomes: list[Settled], claims: list[Pair], ahead: list[Pair], unused: list[str]
    ) -> tuple[list[Outcome | None], set[str]]:
        """One group commit: per claim None or the outcome instead, and the claims ahead lost."""
        if self._ready:
            answer = await self._exchange(pack(outcomes, claims, ahead, unused))
            return answer[0], answer[1]
        try:
            answers = await self._history.commit(
                outcomes, _claims(claims), self._policy, ahead=_claims(ahead), unused=unused
            )
        except HistoryError:
            raise
        except Exception as error:  # a bug: every waiter hears it in one line, none hangs
            text = f"{type(error).__name__}: {error}"
            raise HistoryError(self._history.location.failure(text)) from None
        self._claimed += len(claims) + len(ahead)
        if self._claimed >= self._after and not self._started:
            self._started = True
            self._starting.start_soon(self._open)
        return answers.claims, {run_id for run_id, _ in ahead} - answers.ahead

    @property
    def ready(self) -> bool:
        """Whether commits go to the writer process now."""
        return self._ready

    async def aclose(self) -> None:
        """Let a ready process end when its input does; one still starting is stopped."""
        process, self._process = self._process, None
        if process is None:
            return
        if not self._ready:
            with contextlib.suppress(ProcessLookupError):  # it may have ended already
                process.kill()
        await process.aclose()  # its input closes first: a ready writer ends then

    async def start(self) -> None:
        """Start the writer process now (once), and wait until it is ready or has failed."""
        if not self._started:
            self._started = True
            await self._open()

    async def _open(self) -> None:
        """Start the process and open the history there; until then (or if never), no change."""
        history = self._history
        opening = (history.location, history.org, history.sandbox, history.owner, self._policy)
        try:
            self._process = await anyio.open_process(
                [sys.executable, "-m", "bulkretry._history_writer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
            )
        except OSError as error:
            _log.debug("history writer process not started (%s): commits stay here", error)
            return
        assert self._process.stdout is not None
        self._answers = BufferedByteReceiveStream(self._process.stdout)
        try:
            await self._exchange(frame(opening))
        except HistoryError as error:
            _log.debug("history writer process not ready (%s): commits stay here", error)
            return
        self._ready = True
        _log.debug("history %s: commits move to the writer process", history.location)

    async def _exchange(self, message: bytes) -> Any:  # noqa: ANN401 - the writer's answer
        """One message to the writer and its answer; ``HistoryError`` when it failed."""
        process, answers = self._process, self._answers
        assert process is not None
        assert process.stdin is not None
        assert answers is not None
        try:
            await process.stdin.send(message)
            (size,) = HEADER.unpack(await answers.receive_exactly(HEADER.size))
            answer = pickle.loads(await answers.receive_exactly(size))  # noqa: S301 - our writer
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
            self._ready = False
            text = "its writer process ended unexpectedly"
            raise HistoryError(self._history.location.failure(text)) from None
        if answer[0] == "failed":
            raise HistoryError(answer[1])
        return answer[1:]


def _claims(pairs: list[Pair]) -> list[Claim]:
    return [Claim(run_id=run_id, flow_id=flow_id) for run_id, flow_id in pairs]
