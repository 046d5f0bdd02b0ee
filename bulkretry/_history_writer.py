"""The history's writer process: one job's group commits, off the job's interpreter.

A job's claims and outcomes are committed here, in a process of their own, so that SQLite's
work, and the driver's many trips in and out of it, never compete with the job's event loop
for the GIL: done by a thread of the job, they cost a ``--rate 0`` job a fifth of its pace.
``Committer`` starts it as ``python -P -m bulkretry._history_writer`` and talks over its
stdin and stdout, in length-prefixed pickles: first the history to open, then one message
per group commit, each answered in turn. A commit travels as plain tuples (``pack``), which
pickle at C speed: the event loop's share of the work stays a few microseconds a run.

It ends when its stdin closes: the job is done, or died (``kill -9``). SIGINT and SIGTERM
are ignored: a Ctrl-C reaches the whole process group, and the job, not the signal, decides
when its last outcomes have been written.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import struct
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, Final

from ._outcomes import Failed, Retriggered, Settled, Uncertain

if TYPE_CHECKING:
    from ._history import GroupCommit, History, Pair
    from ._lineage import ClaimPolicy

HEADER: Final = struct.Struct("!I")
"""Each message: its length, then a pickle."""
_RETRIGGERED: Final = "retriggered"


def frame(message: object) -> bytes:
    """One message, ready to write."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def pack(
    outcomes: list[Settled], claims: list[Pair], ahead: list[Pair], unused: list[str]
) -> bytes:
    """One group commit's message: outcomes as tuples led by their kind, claims as pairs.

    The kind is a field of its own: a new run ID may be any text, even ``failed``.
    """
    rows = [
        (_RETRIGGERED, o.run_id, o.new_run_id, o.etag, o.attempts, o.status)
        if type(o) is Retriggered
        else (o.event, o.run_id, o.error, None, o.attempts, o.status)  # type: ignore[union-attr]
        for o in outcomes
    ]
    return frame((rows, claims, ahead, unused))


def _unpack(message: Any) -> GroupCommit:  # noqa: ANN401 - what ``pack`` built
    from ._history import GroupCommit  # noqa: PLC0415 - the writer's side only

    rows, claims, ahead, unused = message
    kinds: dict[str, type[Failed | Uncertain]] = {"failed": Failed, "uncertain": Uncertain}
    outcomes: list[Settled] = [
        Retriggered(run_id=run_id, new_run_id=a, etag=b, attempts=attempts, status=status)
        if kind == _RETRIGGERED
        else kinds[kind](run_id=run_id, error=a, attempts=attempts, status=status)
        for kind, run_id, a, b, attempts, status in rows
    ]
    return GroupCommit.of(outcomes, claims, ahead, unused)


def _receive(stream: BinaryIO) -> Any | None:  # noqa: ANN401 - whatever the job sent
    """The next message, or None when the job closed the pipe."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - from the job that started this process


def main() -> None:
    """Open the history the job names, then commit what it sends until it closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def send(message: object) -> None:
        stdout.write(frame(message))
        stdout.flush()

    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):  # the job is gone
        opened = _open(stdin, send)
        if opened is not None:
            history, policy = opened
            try:
                _commits(history, policy, stdin, send)
            finally:
                history.close_now()


def _open(stdin: BinaryIO, send: Callable[[object], None]) -> tuple[History, ClaimPolicy] | None:
    """The history the job's first message names, opened; None when it cannot be."""
    from ._errors import BulkRetryError  # noqa: PLC0415 - after the signals are ignored
    from ._history import History  # noqa: PLC0415

    opening = _receive(stdin)
    if opening is None:
        return None
    location, org, sandbox, owner, identity, policy = opening
    try:
        history = History.open_now(
            location, org=org, sandbox=sandbox, owner=owner, identity=identity
        )
    except BulkRetryError as error:
        send(("failed", str(error)))
        return None
    send(("ready",))
    return history, policy


def _commits(
    history: History, policy: ClaimPolicy, stdin: BinaryIO, send: Callable[[object], None]
) -> None:
    """Commit each message and answer it; checkpoints beside, on a thread of their own."""
    from ._errors import BulkRetryError  # noqa: PLC0415

    stop = threading.Event()
    try:
        checkpoints = history.checkpointer()
    except BulkRetryError:
        checkpoints = None  # the first commit will say what is wrong
    thread = None
    if checkpoints is not None:
        thread = threading.Thread(target=checkpoints, args=(stop,), daemon=True)
        thread.start()
    broken: str | None = None
    try:
        while (message := _receive(stdin)) is not None:
            if broken is None:  # after a failure nothing more is written: the job stops
                try:
                    answers = history.commit_now(_unpack(message), policy)
                except BulkRetryError as error:  # any failure of the commit, a bug too
                    broken = str(error)
                except Exception as error:  # noqa: BLE001 - a message it cannot read: a bug
                    broken = history.location.failure(f"{type(error).__name__}: {error}")
            if broken is not None:
                send(("failed", broken))
                continue
            send(("ok", answers.claims, set(answers.lost)))
    finally:
        stop.set()
        if thread is not None:
            thread.join()


if __name__ == "__main__":
    main()
