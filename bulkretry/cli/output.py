"""``--output``: refused when it is a file the job reads or keeps, truncated only once safe.

Truncating early is how a second job would wipe a running job's results, and how
``--output`` naming the journal would erase the record a resume depends on. So the path is
checked against every other file of the job first (device and inode, and the resolved
path for files not created yet), opened without truncating, and emptied only when the job
has really started: every check passed, the journal lock held.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from bulkretry._errors import UsageError

STDIN = Path("/dev/stdin")
"""Stands for ``-``: on Linux it leads to whatever stdin is, a redirected file included."""


def check_output(output: Path | None, others: Sequence[tuple[str, Path]]) -> None:
    """Refuse ``--output`` naming one of ``others`` (flag or role, path), even via a link."""
    if output is None:
        return
    target = _identity(output)
    for flag, path in others:
        if _identity(path) & target:
            raise UsageError(
                f"--output {output} is the same file as {flag} {path}: writing the JSON "
                "lines there would destroy it; choose another --output"
            )


def _identity(path: Path) -> set[object]:
    """Ways to recognise the file: its resolved path, and its device and inode if it exists."""
    found: set[object] = set()
    with contextlib.suppress(OSError, RuntimeError):  # a symlink loop: the inode still counts
        found.add(str(path.resolve()))
    try:
        info = path.stat()
    except (OSError, ValueError):
        return found
    found.add((info.st_dev, info.st_ino))
    return found


class Output:
    """The JSON lines' destination: stdout, or ``--output`` opened without truncating it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file = self._open()
        self._started = False

    def _open(self) -> BinaryIO:
        # Unbuffered: the report batches lines itself, and nothing is left in a buffer to
        # fail again at close.
        if self.path is None:
            return open(os.dup(sys.stdout.fileno()), "wb", buffering=0)  # noqa: PTH123 - wraps a descriptor; closed by close()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        try:
            return open(os.open(self.path, flags, 0o644), "wb", buffering=0)  # noqa: PTH123 - same
        except OSError as exc:
            raise UsageError(f"cannot write --output {self.path}: {exc.strerror}") from None

    def start(self) -> None:
        """The job is under way: empty ``--output`` now, like ``>``, once."""
        if self.path is not None and not self._started:
            self._started = True
            fd = self.file.fileno()
            if stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a device has nothing to empty
                os.ftruncate(fd, 0)

    def close(self) -> None:
        """Close the descriptor (never stdout itself: it was duplicated)."""
        self.file.close()
