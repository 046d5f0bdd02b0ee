"""Run ``bulkretry`` as its own process without paying for a new interpreter each time.

The processes come from ``tests/zygote.py`` (one per test process, started on first use):
each is forked from a pre-imported interpreter and then is the real command, with pipes
on fds 0-2 as ``subprocess.run`` gives it (or files, or a file size limit, as its
``stdout=`` and a ``preexec_fn`` would). Tests about the interpreter itself (start-up and its
imports, closed standard streams, peak memory, the console script) start a fresh one.
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
from typing import IO, Any, BinaryIO

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


def _request(argv: Sequence[str], env: dict[str, str], fds: list[int], limit: int | None) -> None:
    global _zygote  # noqa: PLW0603 - one server per test process, started on first use
    request = {"argv": list(argv), "env": env, "cwd": str(Path.cwd()), "file_size_limit": limit}
    with _lock:
        if _zygote is None:
            _zygote = _Zygote()
        socket.send_fds(_zygote.socket, [orjson.dumps(request)], fds)


Stream = int | IO[Any] | None
"""As for ``Popen``: ``subprocess.PIPE`` (the default), ``subprocess.DEVNULL``, or a file."""


def run_forked(  # noqa: PLR0913 - subprocess.run's options
    argv: Sequence[str],
    *,
    env: dict[str, str],
    input: bytes = b"",  # noqa: A002 - subprocess.run's name
    stdout: Stream = subprocess.PIPE,
    stderr: Stream = subprocess.PIPE,
    timeout: float = 60,
    file_size_limit: int | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Like ``subprocess.run`` of ``python -m bulkretry`` (killed at ``timeout``)."""
    process = ForkedProcess(
        argv, env=env, stdout=stdout, stderr=stderr, file_size_limit=file_size_limit
    )
    try:
        out, err = process.communicate(input, timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(process.args, process.wait(), out, err)


class ForkedProcess:
    """A forked ``python -m bulkretry``, driven like ``subprocess.Popen``.

    ``file_size_limit`` is RLIMIT_FSIZE for the command alone (a full disk), as a
    ``preexec_fn`` would set it; SIGXFSZ is ignored, as in any Python process.
    """

    def __init__(  # noqa: PLR0913 - Popen's options
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        stdin: Stream = subprocess.PIPE,
        stdout: Stream = subprocess.PIPE,
        stderr: Stream = subprocess.PIPE,
        file_size_limit: int | None = None,
    ) -> None:
        ours: list[int | None] = []
        theirs: list[int] = []
        to_close: list[int] = []
        for spec, ours_reads in ((stdin, False), (stdout, True), (stderr, True)):
            mine = None
            if spec == subprocess.PIPE:
                read, write = os.pipe()
                mine, child = (read, write) if ours_reads else (write, read)
                to_close.append(child)
            elif spec == subprocess.DEVNULL:
                child = os.open(os.devnull, os.O_RDWR)
                to_close.append(child)
            else:
                child = spec if isinstance(spec, int) else spec.fileno()  # type: ignore[union-attr]
            ours.append(mine)
            theirs.append(child)
        status_r, status_w = os.pipe()
        try:
            _request(argv, env, [*theirs, status_w], file_size_limit)
        finally:
            for fd in (*to_close, status_w):
                os.close(fd)
        self.args = list(argv)
        self.stdin, self.stdout, self.stderr = (
            None if fd is None else os.fdopen(fd, mode)  # closed by the test, as Popen's
            for fd, mode in zip(ours, ("wb", "rb", "rb"), strict=True)
        )
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

        threads = [threading.Thread(target=feed)] if self.stdin and not self.stdin.closed else []
        for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)):
            if stream and not stream.closed:
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
