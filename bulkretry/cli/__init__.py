"""The command line: the only part of bulkretry that prints or exits.

``parser`` declares the commands, ``commands`` runs them on the library API, and this
module turns every deliberate error into one line on stderr and an exit status.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from bulkretry.errors import BulkRetryError

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
    except BulkRetryError as exc:
        error(str(exc))
        return EXIT_USAGE
    except BaseExceptionGroup as group:  # raised through a task group
        ours, rest = group.split(BulkRetryError)
        if ours is None or rest is not None:
            raise
        error(str(_first_leaf(ours)))
        return EXIT_USAGE
    except BrokenPipeError:
        error("the output was closed before the job ended (rerun with --journal to resume)")
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        return EXIT_STOPPED


def _first_leaf(group: BaseExceptionGroup[BulkRetryError]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
