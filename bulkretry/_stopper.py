"""Stopping a job: a request that interrupts waits, but never a request already sent."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

_log = logging.getLogger(__name__)


class Stopper:
    """A stop request that interrupts waits, but never a request already sent."""

    def __init__(self) -> None:
        self._stopped = False
        self._scopes: set[anyio.CancelScope] = set()
        self.failure: str | None = None

    def stop(self, failure: str | None = None) -> None:
        """Stop taking input and sending; let in-flight requests finish.

        ``failure`` says why when the job itself cannot go on (rather than a user's signal).
        """
        if failure is not None and self.failure is None:
            self.failure = failure
            _log.error("%s; stopping: nothing more will be sent", failure)
        self._stopped = True
        for scope in self._scopes:
            scope.cancel()

    @property
    def stopped(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopped

    @contextmanager
    def interruptible(self) -> Iterator[anyio.CancelScope]:
        """A scope that ``stop`` cancels; check ``cancelled_caught`` afterwards."""
        with anyio.CancelScope() as scope:
            if self.stopped:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)
