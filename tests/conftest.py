"""Shared fixtures: an emulator on loopback, settings pointing at it, and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from bulkretry import ApiSettings, Secret
from bulkretry._journal import JournalIndex, Record
from bulkretry.emulator import Emulator, Server, serve, serve_in_thread

from .forked import ForkedProcess, run_forked
from .postgres import PostgresServer, shared_postgres

ORG = "TESTORG@AdobeOrg"
API_KEY = "test-client-id"
CLIENT_SECRET = "test-client-secret-ABC123xyz"
TOKEN = "static-token-Q9w8E7r6"


@pytest.fixture
def anyio_backend() -> str:
    """Pin asyncio: aiolimiter and aiohttp are asyncio-only."""
    return "asyncio"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (all workers), started on first use."""
    run_dir = tmp_path_factory.getbasetemp()  # an xdist worker's is inside the run's
    with shared_postgres(
        run_dir.parent if "PYTEST_XDIST_WORKER" in os.environ else run_dir
    ) as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> str:
    """An empty database on the session's server (its URL carries the password)."""
    return pg_server.new_database()


class _Demo:
    """``bulkretry demo``, run in the background: it spends two seconds following runs."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.process = ForkedProcess(["demo"], env=cli_env(), stdin=subprocess.DEVNULL)
        self.done: tuple[CliResult, float] | BaseException | None = None
        self.thread = threading.Thread(target=self._finish, daemon=True)
        self.thread.start()

    def _finish(self) -> None:
        try:
            stdout, stderr = self.process.communicate(timeout=60)
            result = CliResult(self.process.wait(), stdout or b"", (stderr or b"").decode())
            self.done = result, time.monotonic() - self.started
        except BaseException as exc:  # noqa: BLE001 - handed to the test that reads it
            self.done = exc


_demos: list[_Demo] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the demo as soon as a test process knows one of its tests will read it."""
    if session.config.option.collectonly:
        return
    if any("demo_run" in getattr(item, "fixturenames", ()) for item in session.items):
        _demos.append(_Demo())


@pytest.fixture(scope="session")
def demo_run() -> tuple[CliResult, float]:
    """One ``bulkretry demo`` per test process (started early), and its seconds."""
    demo = _demos[0] if _demos else _Demo()
    demo.thread.join()
    if isinstance(demo.done, BaseException):
        raise demo.done
    assert demo.done is not None
    return demo.done


def make_emulator(**kwargs: Any) -> Emulator:
    """An emulator with the test credentials; unknown run IDs are failed runs."""
    kwargs.setdefault("auto_create", True)
    return Emulator(
        org_id=ORG,
        api_key=API_KEY,
        static_tokens=frozenset({TOKEN}),
        clients={API_KEY: CLIENT_SECRET},
        **kwargs,
    )


@pytest.fixture
def emulator() -> Emulator:
    """A fresh emulator per test, so its counters start at zero."""
    return make_emulator()


@pytest.fixture
async def server(emulator: Emulator) -> AsyncIterator[Server]:
    """The emulator, listening on a free loopback port for this test."""
    async with serve(emulator) as running:
        yield running


@pytest.fixture
def api_settings(server: Server) -> ApiSettings:
    """Static-token settings aimed at the test's emulator."""
    return ApiSettings(
        base_url=server.base_url,
        api_key=API_KEY,
        org_id=ORG,
        sandbox="prod",
        credentials=Secret(TOKEN),
    )


@pytest.fixture
def thread_server(emulator: Emulator) -> Iterator[Server]:
    """The emulator in its own thread, for tests that run the CLI as a subprocess."""
    with serve_in_thread(emulator) as running:
        yield running


def cli_env(server: Server | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for the CLI: static token against ``server``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEP_", "BULKRETRY_"))}
    env |= {"AEP_ORG_ID": ORG, "AEP_API_KEY": API_KEY, "AEP_ACCESS_TOKEN": TOKEN}
    env["BULKRETRY_HISTORY"] = "off"  # tests about the history name their own
    if server is not None:
        env["AEP_FLOW_SERVICE_URL"] = server.base_url
        env["AEP_IMS_TOKEN_URL"] = server.ims_url
    return env | extra


@dataclass(frozen=True)
class CliResult:
    """What one ``bulkretry`` run printed, with stdout parsed as JSON lines."""

    code: int
    stdout: bytes
    stderr: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        """Stdout as JSON lines; fails the test if any line is not JSON."""
        return parse_lines(self.stdout)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The lines of one event type."""
        return [line for line in self.lines if line["event"] == name]

    @property
    def summary(self) -> dict[str, Any]:
        """The last line, which must be the summary."""
        assert self.lines[-1]["event"] == "summary"
        return self.lines[-1]


def run_cli(
    args: Sequence[str], *, env: dict[str, str], stdin: bytes = b"", timeout: float = 60
) -> CliResult:
    """Run ``python -m bulkretry`` as its own process, forked from a pre-imported interpreter."""
    done = run_forked(args, env=env, input=stdin, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr.decode())


def spawn_cli(args: Sequence[str], *, env: dict[str, str]) -> ForkedProcess:
    """Start the CLI with pipes on stdin, stdout and stderr, for tests that talk to it live."""
    return ForkedProcess(args, env=env)


def parse_lines(stdout: bytes) -> list[dict[str, Any]]:
    """Every stdout line must be one JSON object."""
    return [orjson.loads(line) for line in stdout.splitlines()]


def read_journal(path) -> dict[str, Record]:
    """Each run ID's last record as the resume index answers it (run IDs tried again left out)."""
    index = JournalIndex.load(path)
    try:
        ids = []
        for line in path.read_bytes().splitlines() if path.exists() else []:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("run_id"), str):
                ids.append(entry["run_id"])
        return {run_id: record for run_id in ids if (record := index.get(run_id)) is not None}
    finally:
        index.close()
