"""Run ``bulkretry`` as its own process without paying for a new interpreter each time.

The processes come from ``tests/zygote.py`` (one per test process, started on first use):
each is forked from a pre-imported interpreter and then is the real command, with pipes
on fds 0-2 as ``subprocess.run`` gives it. Tests about the interpreter itself (start-up,
closed standard streams, resource limits) start a fresh one with ``subprocess``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

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
    process = ForkedProcess(argv, env=env)
    try:
        stdout, stderr = process.communicate(stdin, timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return process.wait(), stdout, stderr


class ForkedProcess:
    """A forked ``python -m bulkretry`` with piped fds 0-2, driven like ``subprocess.Popen``."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str]) -> None:
        (in_r, in_w), (out_r, out_w), (err_r, err_w), (status_r, status_w) = (
            os.pipe() for _ in range(4)
        )
        try:
            _request(argv, env, [in_r, out_w, err_w, status_w])
        finally:
            for fd in (in_r, out_w, err_w, status_w):
                os.close(fd)
        self.args = list(argv)
        self.stdin: BinaryIO = os.fdopen(in_w, "wb")  # closed by the test, as Popen's
        self.stdout: BinaryIO = os.fdopen(out_r, "rb")
        self.stderr: BinaryIO = os.fdopen(err_r, "rb")
        self._status = os.fdopen(status_r, "rb", buffering=0)  # closed by wait()
        started = self._status.readline()  # the supervisor writes the pid first, then the status
        if not started:
            msg = "the zygote did not start the command (see the test process's stderr)"
            raise RuntimeError(msg)
        self.pid = int(started)
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """The exit status (negative: killed by that signal), as ``Popen.wait``."""
        if self.returncode is None:
            if not select.select([self._status], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self.returncode = os.waitstatus_to_exitcode(int(self._status.readline()))
            self._status.close()
        return self.returncode

    def poll(self) -> int | None:
        """The exit status if the command has ended, else None."""
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, signum: int) -> None:
        """Signal the command unless it has ended (its pid may be someone else's by now)."""
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM, as ``Popen.terminate``."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as ``Popen.kill``."""
        self.send_signal(signal.SIGKILL)

    def communicate(
        self,
        input: bytes | None = None,  # noqa: A002 - Popen.communicate's name
        timeout: float | None = None,
    ) -> tuple[bytes | None, bytes | None]:
        """Feed ``input``, close stdin, read stdout and stderr to their end, then wait."""
        got: dict[str, bytes] = {}

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError):  # the command stopped reading
                if input:
                    self.stdin.write(input)
                self.stdin.close()

        def drain(name: str, stream: BinaryIO) -> None:
            got[name] = stream.read()
            stream.close()

        threads = [threading.Thread(target=feed)] if not self.stdin.closed else []
        for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)):
            if not stream.closed:
                threads.append(threading.Thread(target=drain, args=(name, stream)))
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.daemon = True
            thread.start()
        for thread in threads:
            thread.join(None if deadline is None else max(0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0, deadline - time.monotonic()))
        return got.get("stdout"), got.get("stderr")
