"""The command line: the only part of bulkretry that prints or exits.

``parser`` declares the commands, ``commands`` runs them on the library API, and this
module turns every deliberate error into one line on stderr and an exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from bulkretry._errors import BulkRetryError, OutputError

from .console import EXIT_PROBLEMS, EXIT_STOPPED, EXIT_USAGE, error
from .parser import build_parser

__all__ = ["main", "run"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``bulkretry`` command."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except BaseException as exc:  # noqa: BLE001 - every exit path is decided here
        return _exit_status(exc)


def _exit_status(exc: BaseException) -> int:
    """One line on stderr and a status for the errors we expect; re-raise anything else."""
    leaf = _first_leaf(exc)
    if isinstance(leaf, OutputError):  # the job ran: not a usage error
        error(f"{leaf} (with --journal, rerun to resume)")
        return EXIT_PROBLEMS
    if isinstance(leaf, BulkRetryError):
        error(str(leaf))
        return EXIT_USAGE
    if isinstance(leaf, BrokenPipeError):
        error("the output was closed before the job ended (with --journal, rerun to resume)")
        return EXIT_PROBLEMS
    if isinstance(leaf, KeyboardInterrupt):
        return EXIT_STOPPED
    raise exc


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside task-group exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
