"""A real PostgreSQL server for the suite: initdb and pg_ctl in a temporary directory.

One server per run, shared by the xdist workers and started only when a test asks for it;
run as an unprivileged user when the suite runs as root (initdb refuses root). Each test
gets an empty database.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

USER = "bulkretry"
PASSWORD = "pg-secret-Zx81"


def _bindir() -> Path | None:
    try:
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        found = ""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    candidates = [found, *map(str, debian)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_RESET = """
DO $$
DECLARE schema text;
BEGIN
  FOR schema IN SELECT nspname FROM pg_namespace
                WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', schema);
  END LOOP;
  CREATE SCHEMA public;
END $$
"""
"""Empty a database as CREATE DATABASE would leave it: drop every schema, recreate public."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: ``url(db)`` for a database on it, ``new_database()`` for a fresh one."""

    port: int
    reusable: list[str] = field(default_factory=list)  # this process's database, once made

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        """A connection URL, password included."""
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """An empty database; returns its URL.

        CREATE DATABASE takes a quarter of a second, emptying one a hundredth: the tests of
        one process (one at a time) share a database, emptied of everything before each.
        """
        import psycopg  # noqa: PLC0415 - only PostgreSQL tests need it

        if not self.reusable:
            name = "t_" + uuid.uuid4().hex[:12]
            with psycopg.connect(self.url(), autocommit=True) as connection:
                connection.execute(f"CREATE DATABASE {name}")
            self.reusable.append(name)
            return self.url(name)
        url = self.url(self.reusable[0])
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            connection.execute(_RESET)
        return url


@contextlib.contextmanager
def shared_postgres(meeting: Path) -> Iterator[PostgresServer]:
    """The server of all this run's test processes: the first to ask starts it, the last stops it.

    ``meeting`` is a directory every process of the run knows (xdist workers: the run's
    temporary directory); in it, under a lock, the server's port and directory and how many
    processes use it. One initdb for the run instead of one per worker.
    """
    bindir = _bindir()
    if bindir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CI") == "true":  # .ci/run installs it: a skip there would hide tests
            pytest.fail(reason)
        pytest.skip(reason)
    pytest.importorskip("psycopg")
    state_file = meeting / "postgres.json"
    with _locked(meeting):
        if state_file.exists():
            state = json.loads(state_file.read_text())
        else:
            port, root = _start(bindir)
            state = {"port": port, "root": str(root), "users": 0}
        state["users"] += 1
        state_file.write_text(json.dumps(state))
    try:
        yield PostgresServer(state["port"])
    finally:
        with _locked(meeting):
            state = json.loads(state_file.read_text())
            state["users"] -= 1
            if state["users"]:
                state_file.write_text(json.dumps(state))
            else:
                _stop(bindir, Path(state["root"]))
                state_file.unlink()


@contextlib.contextmanager
def _locked(meeting: Path) -> Iterator[None]:
    with (meeting / "postgres.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _quiet(root: Path) -> dict[str, Any]:
    """Run as nobody when we are root (initdb refuses root), output kept out of the way."""
    run_as: dict[str, int] = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid}
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, **run_as}


def _start(bindir: Path) -> tuple[int, Path]:
    """Start a throwaway server (no fsync: tests need speed, not crash safety of the server)."""
    root = Path(tempfile.mkdtemp(prefix="bulkretry-pg-"))
    data, port = root / "data", _free_port()
    quiet = _quiet(root)
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD)
    if "user" in quiet:
        os.chown(pwfile, quiet["user"], quiet["group"])
    subprocess.run(
        [
            bindir / "initdb",
            "-D",
            data,
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--no-sync",
        ],
        check=True,
        **quiet,
    )
    options = f"-F -p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run(
        [bindir / "pg_ctl", "-D", data, "-o", options, "-l", root / "log", "-w", "start"],
        check=True,
        **quiet,
    )
    return port, root


def _stop(bindir: Path, root: Path) -> None:
    subprocess.run(
        [bindir / "pg_ctl", "-D", root / "data", "-m", "immediate", "-w", "stop"],
        check=False,
        **_quiet(root),
    )
    shutil.rmtree(root, ignore_errors=True)
