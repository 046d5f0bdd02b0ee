"""Exit statuses and the human side of the terminal: stderr messages and diagnostics."""

from __future__ import annotations

import logging
import sys
from typing import Final

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_USAGE: Final = 2
EXIT_STOPPED: Final = 130

LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def error(message: str) -> None:
    """One line on stderr, the way Unix tools report a problem."""
    print(f"bulkretry: error: {message}", file=sys.stderr)  # noqa: T201


def say(message: str) -> None:
    """A line for the person reading stderr."""
    print(f"bulkretry: {message}", file=sys.stderr)  # noqa: T201


def setup_diagnostics(level: str) -> None:
    """Send the ``bulkretry`` logger's records to stderr at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("bulkretry: %(levelname)s: %(message)s"))
    logger = logging.getLogger("bulkretry")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
