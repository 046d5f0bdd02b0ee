"""The command line: the only part of bulkretry that prints or exits.

``parser`` declares the commands and ``flags`` the flags they share; ``retry``, ``failed``,
``status`` and ``commands`` (what they share, and ``demo``) run them on the library API, and
``signals`` stops them. This module turns every deliberate error into one line on stderr and
an exit status.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Final, NoReturn

from bulkretry._errors import BulkRetryError, OutputError

__all__ = ["main", "run"]

_STOPPED: Final = 130  # console.EXIT_STOPPED, known before console is imported
RESUME_HINT: Final = "rerun the same command to resume from the history or --journal"


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``bulkretry`` command."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and return its exit status.

    The heavy imports happen here, with SIGINT/SIGTERM held back until they are done: an
    import cut short by KeyboardInterrupt gave a traceback, and could crash the interpreter
    on its way out. A signal received meanwhile ends the command before it starts. An
    ignored SIGINT (a background job of a script) stays ignored.
    """
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        del frame
        held.append(signum)

    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, hold)
    signal.signal(signal.SIGTERM, hold)
    try:
        _fill_standard_streams()
        from .parser import build_parser  # noqa: PLC0415 - see above
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C until a job listens
    if held:
        sys.stderr.write(f"bulkretry: {signal.Signals(held[0]).name}: stopped before starting\n")
        return _STOPPED
    resumable = False
    try:
        args = build_parser().parse_args(argv)
        resumable = getattr(args, "resumable", False)
        return int(args.handler(args))
    except BaseException as exc:  # noqa: BLE001 - every exit path is decided here
        return _exit_status(exc, resumable=resumable)


def _interrupt(signum: int, frame: object) -> None:
    del signum, frame
    raise KeyboardInterrupt


def _fill_standard_streams() -> None:
    """Give a closed stdin, stdout or stderr (``2>&-``) /dev/null.

    Otherwise the next file opened (the journal, ``--output``) would take its descriptor
    and receive what was meant for it, and ``sys.stderr`` would be None: messages would
    fail, or land on stdout among the JSON lines.
    """
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115 - the process's own stream


def _exit_status(exc: BaseException, *, resumable: bool) -> int:
    """One line on stderr and a status for the errors we expect; re-raise anything else.

    ``resumable``: the command was ``retry``, which a rerun resumes (a listing just reruns).
    """
    leaf = _first_leaf(exc)
    if isinstance(leaf, KeyboardInterrupt):
        return _STOPPED
    from .console import EXIT_PROBLEMS, EXIT_USAGE, error  # noqa: PLC0415 - see run

    hint = f" ({RESUME_HINT})" if resumable else ""
    if isinstance(leaf, OutputError):  # the job ran: not a usage error
        error(f"{leaf}{hint}")
        return EXIT_PROBLEMS
    if isinstance(leaf, BulkRetryError):
        error(str(leaf))
        return EXIT_USAGE
    if isinstance(leaf, BrokenPipeError):
        error(f"the output was closed before the job ended{hint}")
        return EXIT_PROBLEMS
    raise exc


def _first_leaf(exc: BaseException) -> BaseException:
    """The first exception inside task-group exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
