"""A re-triggered run's life: in progress for a while, then ``success`` or ``failed``.

Runs finish lazily: nothing runs in the background; whoever reads the runs first settles
the ones whose time has come (``Emulator.runs`` does), so a test sees the same state the
API would answer.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping

    from bulkretry.emulator.model import Run

#: What a poison run without errors of its own fails with, as Adobe's connectors word it.
DEFAULT_ERROR: Final = (
    "CONNECTOR-1001-500",
    "The connection to the source failed: read timed out.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lifecycle:
    """How long a re-triggered run stays ``inProgress`` and how it ends.

    ``seconds=None`` keeps new runs in progress for ever. A run marked ``poison`` fails
    every time, and so do its re-runs, with the original's errors (``DEFAULT_ERROR`` when
    it has none); every other re-run succeeds, ingesting the original's input records.
    """

    seconds: float | None = 2.0

    def __post_init__(self) -> None:
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"a run cannot take {self.seconds} seconds")

    def ending(self, original: Run, new_run: Run, now: dt.datetime) -> Run:
        """The finished state of ``new_run``, re-triggered from ``original``, at ``now``."""
        if new_run.poison:
            return replace(
                new_run,
                status="failed",
                completed_at=now,
                output_records=0,
                input_records=original.input_records,
                failed_records=original.input_records,
                errors=original.errors or (DEFAULT_ERROR,),
            )
        return replace(
            new_run,
            status="success",
            completed_at=now,
            input_records=original.input_records,
            output_records=original.input_records,
        )


class Finishing:
    """Runs due to finish, earliest first; ``settle`` applies the endings that are due."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: list[tuple[float, int, Run]] = []
        self._order = itertools.count()  # ties on time break by insertion, never by Run

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, lifecycle: Lifecycle, original: Run, new_run: Run) -> None:
        """Plan the end of ``new_run``, unless the lifecycle keeps runs going for ever."""
        if lifecycle.seconds is None:
            return
        when = self._clock() + lifecycle.seconds
        finished_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lifecycle.seconds)
        ending = lifecycle.ending(original, new_run, finished_at)
        heapq.heappush(self._due, (when, next(self._order), ending))

    def settle(self, runs: MutableMapping[str, Run]) -> None:
        """Replace every in-progress run whose time has come by its ending."""
        now = self._clock()
        while self._due and self._due[0][0] <= now:
            _, _, ending = heapq.heappop(self._due)
            current = runs.get(ending.id)
            if current is not None and current.status == "inProgress":  # not replaced meanwhile
                runs[ending.id] = ending
