"""Contract: the installed CLI against Stoplight Prism serving Adobe's unmodified OpenAPI file.

Prism is an independent mock server: it validates every request against
``tests/fixtures/flow-service/flow-service.yaml`` (refusing with 422 what the file does not
allow, such as the tutorial's ``op=re-trigger``) and answers the file's own examples: a
whole run with ``eTag`` for a re-trigger, and a listing whose next link is the example
``/connections?continuationToken=abcdefghijkLMNOPqrstupWXKYZ`` on every page.

Prism comes from npm, pinned in ``tests/prism/package-lock.json``; ``.ci/run`` installs it
with ``npm ci``. Without it these tests skip locally, and fail in CI (``CI=true``).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import cli_env, run_cli

HERE = Path(__file__).parent
SPEC_FILE = HERE / "fixtures" / "flow-service" / "flow-service.yaml"
PRISM = HERE / "prism" / "node_modules" / ".bin" / "prism"
#: Prism's log line for each request it receives: method and path.
RECEIVED = re.compile(r"\[HTTP SERVER\] (\w+) (\S+) .*Request received")
START_TIMEOUT = 60.0
#: flow-service.yaml at AdobeDocs/experience-platform-apis 16c60cd7a5617582fc21500f5ab3edf0e2ee308b.
UPSTREAM_SHA256 = "f97b8f36a5ecb3282b9d65f1c3e0f283ed4afaf676053a1ef40b80857f660932"


def spec_example(schema: str, name: str) -> Any:
    """An example value of the spec, as Prism's static mode answers it."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(SPEC_FILE.read_text(), Loader=loader)
    return spec["components"]["schemas"][schema]["properties"][name]["example"]


@dataclass(frozen=True)
class Prism:
    """A running Prism: its base URL and the log it writes."""

    base_url: str
    log: Path

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request Prism has received so far."""
        text = self.log.read_text(errors="replace")
        return [(m.group(1).upper(), m.group(2)) for m in RECEIVED.finditer(text)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prism]:
    """Prism on a free loopback port, serving the unmodified spec with request validation."""
    if not PRISM.exists():
        reason = f"Stoplight Prism is not installed: run `npm ci --prefix {PRISM.parents[2]}`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the contract test must run)")
        pytest.skip(reason)
    port = _free_port()
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [str(PRISM), "mock", "--host", "127.0.0.1", "--port", str(port), str(SPEC_FILE)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Prism is listening" not in log.read_text(errors="replace"):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Prism did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield Prism(f"http://127.0.0.1:{port}", log)
    finally:
        server.terminate()
        server.wait(10)


def test_the_served_spec_is_adobes_file_unmodified():
    """The file Prism serves is byte for byte upstream's, with its license beside it."""
    assert hashlib.sha256(SPEC_FILE.read_bytes()).hexdigest() == UPSTREAM_SHA256
    assert "Apache License" in (SPEC_FILE.parent / "LICENSE").read_text()


def env_for(prism: Prism, tmp_path: Path) -> dict[str, str]:
    """A static-token environment aimed at Prism, with a state directory of its own."""
    env = cli_env(None, AEP_FLOW_SERVICE_URL=prism.base_url, XDG_STATE_HOME=str(tmp_path))
    env.pop("BULKRETRY_HISTORY", None)
    return env


def test_retry_against_prism_retriggers_every_run_with_the_specs_id_and_etag(prism, tmp_path):
    """Refused op=re-trigger (422) switches to RE_TRIGGER; every run is re-triggered, exit 0."""
    before = len(prism.requests())
    ids = [f"run-{n}" for n in range(5)]
    result = run_cli(
        ["retry", "--rate", "0", "--concurrency", "2"],
        env=env_for(prism, tmp_path),
        stdin="\n".join(ids).encode(),
    )
    assert result.code == 0, result.stderr
    lines = result.events("retriggered")
    assert sorted(line["run_id"] for line in lines) == ids
    new_id, etag = spec_example("FlowRunItemDTO", "id"), spec_example("FlowRunItemDTO", "eTag")
    assert {(line["new_run_id"], line["etag"], line["attempts"]) for line in lines} == {
        (new_id, etag, 1)
    }
    assert result.summary["retriggered"] == 5
    assert result.stderr.count("refused op=re-trigger (HTTP 422 Invalid request: query op:") == 1
    sent = prism.requests()[before:]
    assert {path for _, path in sent} == {f"/runs/{run_id}/action" for run_id in ids}
    assert 6 <= len(sent) <= 7  # at most --concurrency requests refused before the switch


def test_failed_against_prism_never_leaves_runs_and_stops_on_the_repeated_token(prism, tmp_path):
    """The example next link (/connections?token) is read for its token only, on /runs.

    Prism answers that same token on every page: a cycle, which ends the listing (exit 1).
    """
    before = len(prism.requests())
    flow_id = spec_example("FlowRunItemDTO", "flowId")
    result = run_cli(
        ["failed", "--flow-id", flow_id, "--since", "3650d", "--rate", "0"],
        env=env_for(prism, tmp_path),
    )
    assert result.code == 1, result.stderr
    assert "the next link on page 2 repeats a continuation token" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == b""  # the example run succeeded with records: nothing to retry
    assert prism.requests()[before:] == [("GET", "/runs"), ("GET", "/runs")]
