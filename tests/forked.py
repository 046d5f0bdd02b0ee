"""Run ``bulkretry`` as its own process without paying for a new interpreter each time.

The processes come from ``tests/zygote.py`` (one per test process, started on first use):
each is forked from a pre-imported interpreter and then is the real command, with pipes
on fds 0-2 as ``subprocess.run`` gives it. Tests about the interpreter itself (start-up,
closed standard streams, resource limits) start a fresh one with ``subprocess``.
"""

from __future__ import annotations

import atexit
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

_ZYGOTE = Path(__file__).with_name("zygote.py")


class _Zygote:
    """The server process and the socket its requests go through."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen(
            [sys.executable, str(_ZYGOTE), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()
        self.socket = ours
        atexit.register(self.close)

    def close(self) -> None:
        """End the server: it exits when its socket closes."""
        self.socket.close()
        self.process.wait(timeout=10)


_zygote: _Zygote | None = None
_lock = threading.Lock()


def _request(argv: Sequence[str], env: dict[str, str], fds: list[int]) -> None:
    global _zygote  # noqa: PLW0603 - one server per test process, started on first use
    message = orjson.dumps({"argv": list(argv), "env": env, "cwd": str(Path.cwd())})
    with _lock:
        if _zygote is None:
            _zygote = _Zygote()
        socket.send_fds(_zygote.socket, [message], fds)


def run_forked(
    argv: Sequence[str], *, env: dict[str, str], stdin: bytes, timeout: float
) -> tuple[int, bytes, bytes]:
    """Like ``subprocess.run`` of ``python -m bulkretry``: (exit status, stdout, stderr)."""
    pipes = [os.pipe() for _ in range(4)]  # stdin, stdout, stderr, status
    theirs = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]]
    try:
        _request(argv, env, theirs)
    finally:
        for fd in theirs:
            os.close(fd)
    pipe = _Pipes(writer=pipes[0][1], reads=[pipes[1][0], pipes[2][0], pipes[3][0]])
    out, err, status = pipe.communicate(stdin, timeout)
    _pid, wait_status = (int(field) for field in status.split())
    return os.waitstatus_to_exitcode(wait_status), out, err


class _Pipes:
    """Our ends of one command's pipes, each closed exactly once."""

    def __init__(self, *, writer: int, reads: list[int]) -> None:
        self.writer = writer
        self.reads = reads
        self.open = {writer, *reads}

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)

    def communicate(self, stdin: bytes, timeout: float) -> list[bytes]:
        """Feed stdin and read every pipe to its end, as ``Popen.communicate`` does."""
        got = {fd: bytearray() for fd in self.reads}
        deadline = time.monotonic() + timeout
        try:
            with selectors.DefaultSelector() as selector:
                if stdin:
                    os.set_blocking(self.writer, False)
                    selector.register(self.writer, selectors.EVENT_WRITE)
                else:
                    self.close(self.writer)
                for fd in self.reads:
                    selector.register(fd, selectors.EVENT_READ)
                while selector.get_map():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        _kill(bytes(got[self.reads[-1]]))
                        raise subprocess.TimeoutExpired("bulkretry", timeout)
                    for key, _ in selector.select(remaining):
                        fd = int(key.fd)
                        if fd == self.writer:
                            stdin = self._feed(stdin, selector)
                            continue
                        chunk = os.read(fd, 65536)
                        got[fd] += chunk
                        if not chunk:
                            selector.unregister(fd)
        finally:
            for fd in list(self.open):
                self.close(fd)
        return [bytes(got[fd]) for fd in self.reads]

    def _feed(self, stdin: bytes, selector: selectors.BaseSelector) -> bytes:
        """Write what the pipe takes; close it when all is written or the reader is gone."""
        try:
            stdin = stdin[os.write(self.writer, stdin[:65536]) :]
        except BrokenPipeError:
            stdin = b""
        if not stdin:
            selector.unregister(self.writer)
            self.close(self.writer)
        return stdin


def _kill(status: bytes) -> None:
    """Kill the command whose pid the supervisor reported (if it did)."""
    if status.strip():
        os.kill(int(status.split()[0]), signal.SIGKILL)
