"""A live progress line on stderr for a person at a terminal; silent for schedulers."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

import anyio
import anyio.to_thread
from tqdm import tqdm

from bulkretry._outcomes import Tally

COUNT_LIMIT: Final = 256 * 1024 * 1024
"""Count input lines for done/total only up to this many bytes; beyond, show a rate alone."""


def count_run_lines(paths: Sequence[str]) -> int | None:
    """Lines that may hold a run ID, when every input is a regular file of modest size."""
    if not paths or "-" in paths:
        return None
    try:
        infos = [Path(path).stat() for path in paths]
    except OSError:
        return None
    if not all(stat.S_ISREG(info.st_mode) for info in infos):
        return None
    if sum(info.st_size for info in infos) > COUNT_LIMIT:
        return None
    total = 0
    for path in paths:
        with open(path, "rb") as handle:  # noqa: PTH123 - a plain binary read
            total += sum(1 for line in handle if (s := line.strip()) and not s.startswith(b"#"))
    return total


def _counts(tally: Tally) -> str:
    counts = tally.counts
    return (
        f"ok {counts['retriggered']} failed {counts['failed']} "
        f"uncertain {counts['uncertain']} skipped {counts['skipped']}"
    )


class Progress:
    """done/total, rate, ETA and outcome counts, redrawn a few times a second."""

    def __init__(self, stream: TextIO, paths: Sequence[str]) -> None:
        self._stream = stream
        self._paths = paths
        self._bar: tqdm[Any] | None = None
        self._done = 0

    def show(self) -> None:
        """Start drawing, once the job is under way."""
        self._bar = tqdm(
            total=None,  # known later, from count(): the first request need not wait for it
            initial=self._done,
            file=self._stream,
            unit=" runs",
            dynamic_ncols=True,
            mininterval=0.25,
            smoothing=0.05,
            leave=False,
        )

    async def count(self) -> None:
        """Count the input's lines in a thread, then show done/total."""
        total = await anyio.to_thread.run_sync(count_run_lines, self._paths, abandon_on_cancel=True)
        if total is not None and self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def advance(self, tally: Tally) -> None:
        """Count one final outcome."""
        self._done += 1
        if self._bar is None:
            return
        self._bar.set_postfix_str(_counts(tally), refresh=False)
        self._bar.update(1)

    def followed(self, tally: Tally) -> None:
        """A new run ended (``--wait``): the bar, full by then, says how the runs stand."""
        if self._bar is not None:
            ended = tally.ended
            waiting = tally.counts["retriggered"] - sum(ended.values())
            self._bar.set_postfix_str(
                f"{_counts(tally)} | recovered {ended['success']} "
                f"failed again {ended['failed']} waiting {waiting}",
            )

    def close(self) -> None:
        """Erase the line, so the human summary takes its place."""
        if self._bar is not None:
            self._bar.close()
