"""SIGINT/SIGTERM while a command runs: stop gracefully first, exit at once on a second."""

from __future__ import annotations

import os
import signal

import anyio
from anyio.abc import TaskStatus

from bulkretry import _api as api
from bulkretry._report import Report

from .console import EXIT_STOPPED, say


class _Signals:
    """SIGINT/SIGTERM: the first stops the job gracefully (or its start-up), a second exits."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.startup = anyio.CancelScope()
        self.received = 0
        self._job: api.RetriggerJob | None = None

    def attach(self, job: api.RetriggerJob) -> None:
        """From now on a signal stops ``job`` instead of cancelling the start-up."""
        self._job = job
        if self.received:
            job.stop()

    async def listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Handle signals until cancelled; ready once the handlers are installed."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.received += 1
                if self.received > 1:
                    self.report.abandon()  # stdout keeps whole lines; the journal is whole
                    os._exit(EXIT_STOPPED)
                say(
                    f"{signal.Signals(signum).name}: finishing requests in flight, sending "
                    "nothing new (signal again to exit at once)"
                )
                if self._job is None:
                    self.startup.cancel()  # nothing sent yet: stop before the first request
                else:
                    self._job.stop()


class _StopOnSignal:
    """The first SIGINT/SIGTERM cancels a scope; its name is kept for the closing line."""

    def __init__(self) -> None:
        self.received: str | None = None

    async def listen(
        self, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Cancel ``scope`` on the first signal."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.received = signal.Signals(signum).name
                scope.cancel()
