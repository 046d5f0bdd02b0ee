from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

import bulkretry.emulator
from bulkretry.emulator import Emulator, serve, serve_in_thread

from .support import HEADERS, retrigger

ROOT = Path(__file__).resolve().parents[2]


def post(url: str) -> tuple[int, dict]:
    """Send a re-trigger from plain sync code, as a subprocess-driving test would."""
    request = urllib.request.Request(url, method="POST", headers=HEADERS, data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_serve_in_thread_from_sync_code():
    """Serving in a thread answers sync callers and stops cleanly, freeing its port."""
    emu = Emulator(auto_create=True)
    with serve_in_thread(emu) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/data/foundation/flowservice"
        assert server.ims_url == f"http://127.0.0.1:{server.port}/ims/token/v3"
        status, body = post(f"{server.base_url}/runs/abc/action?op=re-trigger")
        assert (status, set(body)) == (200, {"id", "etag"})
    assert emu.stats.retriggers == {"abc": 1}
    with pytest.raises(urllib.error.URLError):
        post(f"{server.base_url}/runs/abc/action?op=re-trigger")


def test_serve_in_thread_reports_bind_errors():
    """A port already taken raises in the caller's thread instead of hanging."""
    with serve_in_thread(Emulator()) as server:
        taken = serve_in_thread(Emulator(), port=server.port)
        with pytest.raises(OSError, match=r"(?i)address already in use"), taken:
            pass


@pytest.mark.anyio
async def test_many_emulators_start_and_stop():
    """Sixty emulators in a row start, answer and stop without leaks or warnings."""
    async with aiohttp.ClientSession() as session:
        for _ in range(60):
            async with serve(Emulator(auto_create=True)) as server:
                assert (await retrigger(session, server, "x"))[0] == 200


def test_exports_are_deliberate():
    """The package exports exactly its public names, sorted."""
    expected = [
        "Emulator",
        "Faults",
        "Lifecycle",
        "RecordedRequest",
        "Run",
        "Server",
        "Stats",
        "serve",
        "serve_in_thread",
    ]
    assert bulkretry.emulator.__all__ == expected


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_module_entry_point_serves_until_interrupted(tmp_path):
    """The module entry point prints its URLs and credentials, then stops on Ctrl-C."""
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps([{"id": "r1", "flow_id": "f1"}]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "bulkretry.emulator", "--port", "0", "--runs", str(runs)]
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as process:
        lines = [process.stderr.readline() for _ in range(5)]
        base_url = lines[0].split()[-1]
        status, _ = post(f"{base_url}/runs/r1/action?op=re-trigger")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    assert status == 200
    assert lines[1].split()[-1].endswith("/ims/token/v3")
    assert "static-token" in lines[3]
    assert "1 runs loaded" in lines[4]
