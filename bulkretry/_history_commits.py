"""Where a job's group commits go: its own connection first, then the writer process.

A small job commits through its own connection, in a thread, and never waits for a process to
start. Once a job has claimed 100 runs, ``Committer`` starts the history's writer
process (``_history_writer``) and, once that has opened the history, sends it every commit
over a pipe: SQLite's work then runs beside the event loop instead of taking turns with it
for the GIL. A writer process that cannot start or open the history changes nothing; one
that dies mid-job fails the commit it was given (whether that commit happened is unknown, so
the job stops).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
from typing import Any, Final

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from ._errors import HistoryError
from ._history import GroupCommit, History, Pair
from ._history_writer import HEADER, frame, pack
from ._lineage import ClaimPolicy
from ._outcomes import Outcome, Settled

_log = logging.getLogger(__name__)

WRITER_AFTER: Final = 100
"""Claims after which a job's commits move to the writer process."""
_SECRET_PREFIXES: Final = ("AEP_", "BULKRETRY_")
"""The job's settings, credentials among them: the writer gets what it needs by the pipe."""


class Committer:
    """Commits through the job's own connection until the writer process is ready, then there.

    The process starts once the job has claimed ``after`` runs: a small job never waits for
    it (nor pays for it), a large one hands its commits over 100 claims in.
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
        self._started = self._ready = self._closed = False

    async def commit(
        self, outcomes: list[Settled], claims: list[Pair], ahead: list[Pair], unused: list[str]
    ) -> tuple[list[Outcome | None], set[str]]:
        """One group commit: per claim None or the outcome instead, and the claims ahead lost."""
        if self._ready:
            answer = await self._exchange(pack(outcomes, claims, ahead, unused))
            return answer[0], answer[1]
        group = GroupCommit.of(outcomes, claims, ahead, unused)
        answers = await self._history.commit(group, self._policy)
        self._claimed += len(claims) + len(ahead)
        if self._claimed >= self._after and not self._started:
            self._started = True
            self._starting.start_soon(self._open)
        return answers.claims, set(answers.lost)

    @property
    def ready(self) -> bool:
        """Whether commits go to the writer process now."""
        return self._ready

    async def aclose(self) -> None:
        """Let a ready process end when its input does; one still starting is stopped."""
        self._closed = True
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
        opening = (
            history.location,
            history.org,
            history.sandbox,
            history.owner,
            history.identity(),
            self._policy,
        )
        try:
            # Its own session: a Ctrl-C at the terminal is the job's to handle, not the writer's.
            # -P: the job's working directory is not on its import path. It learns what it
            # needs from the pipe, so no credential of the job is in its environment.
            self._process = await anyio.open_process(
                [sys.executable, "-P", "-m", "bulkretry._history_writer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith(_SECRET_PREFIXES)},
            )
        except (OSError, ValueError) as error:
            _log.debug("history writer process not started (%s): commits stay here", error)
            return
        if self._closed:  # the job ended while the process started
            await self.aclose()
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
            text = "its writer process ended unexpectedly"
            raise HistoryError(self._history.location.failure(text)) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
            text = f"its writer process answered in a way it never should ({error})"
            raise HistoryError(self._history.location.failure(text)) from None
        if answer[0] == "failed":
            raise HistoryError(answer[1])
        return answer[1:]
