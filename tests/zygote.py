"""A pre-imported interpreter that forks ``python -m bulkretry`` processes for the tests.

Each CLI test used to pay a fresh interpreter and ~0.25 s of imports: most of the suite's
CPU. This server imports bulkretry and its dependencies once, then for each request forks
a supervisor, which forks the command itself with the test's pipes as fds 0-2, its
environment and its working directory, and runs ``bulkretry`` as ``-m`` would. The command
is a real process (its own pid, fds, signals, exit status and interpreter shutdown); only
the start-up is shared. The supervisor writes the command's pid, then its wait status, to
the request's status pipe. Started by ``tests.forked``; it ends when that socket closes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import os
import pkgutil
import resource
import runpy
import socket
import sys
from pathlib import Path
from typing import Any

import orjson

_MAX_REQUEST = 1 << 20


def _preload() -> None:
    """Import everything a command may import, so that no child pays for it."""
    import bulkretry  # noqa: PLC0415 - the point of this module is when things load

    for module in pkgutil.walk_packages(bulkretry.__path__, "bulkretry."):
        if module.name != "bulkretry.__main__":  # importing it runs the command
            importlib.import_module(module.name)
    for name in ("anyio._backends._asyncio", "uvloop", "psycopg", "sqlite3"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _serve(sock: socket.socket) -> dict[str, Any]:
    """Fork for each request; return only in the forked command, with its request."""
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # reap finished supervisors
                pass
        message, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, 4)
        if not message:
            os._exit(0)  # the test process is done: nothing to flush or finalise
        if os.fork() == 0:
            sock.close()
            return _supervise(orjson.loads(message), fds)
        for fd in fds:
            os.close(fd)


def _supervise(request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    """In the supervisor: fork the command, report its pid and wait status, exit."""
    *streams, status = fds
    pid = os.fork()
    if pid == 0:
        os.close(status)
        for target, fd in enumerate(streams):
            os.dup2(fd, target)
            os.close(fd)
        return request
    for fd in streams:
        os.close(fd)
    with contextlib.suppress(BrokenPipeError):  # the test process stopped listening
        os.write(status, f"{pid}\n".encode())
        _, wait_status = os.waitpid(pid, 0)
        os.write(status, f"{wait_status}\n".encode())
    os._exit(0)


def _standard_streams() -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, made as the interpreter makes them at start-up.

    Line-buffered stderr (and stdout on a terminal); with PYTHONUNBUFFERED in the command's
    environment, stdout and stderr write through, unbuffered.
    """
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        template, writes = getattr(sys, name), fd > 0
        raw = unbuffered and writes
        binary = io.open(fd, "wb" if writes else "rb", buffering=0 if raw else -1, closefd=False)  # noqa: SIM115, UP020 - the process's own stream, like the interpreter's
        stream = io.TextIOWrapper(
            binary,
            encoding=template.encoding,
            errors=template.errors,
            newline="\n",
            line_buffering=not raw and (fd == 2 or (fd == 1 and os.isatty(1))),
            write_through=raw,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def main() -> None:
    """Serve until the test process goes; in each forked child, run the command."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    gc.freeze()  # else the children's collections and shutdown copy every page of it
    request = _serve(sock)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.closerange(3, 256)  # as subprocess's close_fds: nothing of the server's leaks in
    if (limit := request["file_size_limit"]) is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    _standard_streams()
    sys.argv = ["bulkretry", *request["argv"]]
    sys.path[0] = str(Path.cwd())  # as ``-m`` does
    runpy.run_module("bulkretry", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
