from __future__ import annotations

import datetime as dt

import orjson
import pytest

from bulkretry.emulator import Emulator, Lifecycle, Run, serve
from bulkretry.emulator.lifecycle import DEFAULT_ERROR, Finishing

from .support import HEADERS, retrigger

pytestmark = pytest.mark.anyio

T0 = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
TRANSIENT = (("CONNECTOR-1001-500", "The connection to the source failed."),)
MAPPING = (("MAPPER-2101-400", "Field 'email' is not in the target schema."),)


def _emulator(seconds: float | None) -> Emulator:
    emu = Emulator(lifecycle=Lifecycle(seconds=seconds))
    emu.add_run(Run(id="flaky", flow_id="flow-a", created_at=T0, input_records=7, errors=TRANSIENT))
    emu.add_run(Run(id="poison", flow_id="flow-b", created_at=T0, errors=MAPPING, poison=True))
    emu.add_run(Run(id="bare-poison", flow_id="flow-b", created_at=T0, poison=True))
    return emu


async def _new_run(session, server, run_id: str) -> str:
    status, _, body = await retrigger(session, server, run_id)
    assert status == 200
    return str(orjson.loads(body)["id"])


async def _get(session, server, run_id: str) -> dict:
    async with session.get(f"{server.base_url}/runs/{run_id}", headers=HEADERS) as response:
        assert response.status == 200
        (item,) = (await response.json())["items"]
    return item


async def test_a_rerun_is_a_real_run_in_progress(session):
    """A re-run is a new run of the same flow, created now, inProgress, seen by GET and list."""
    emu = _emulator(seconds=None)
    before = dt.datetime.now(dt.UTC)
    async with serve(emu) as server:
        new_id = await _new_run(session, server, "flaky")
        item = await _get(session, server, new_id)
        params = {"property": "flowId==flow-a"}
        async with session.get(f"{server.base_url}/runs", params=params, headers=HEADERS) as got:
            listed = [run["id"] for run in (await got.json())["items"]]
    assert item["flowId"] == "flow-a"
    assert item["metrics"]["statusSummary"] == {"status": "inProgress"}
    assert "completedAtUTC" not in item["metrics"]["durationSummary"]
    assert item["createdAt"] >= int(before.timestamp() * 1000) - 1
    assert listed == [new_id, "flaky"]  # newest first


async def test_a_rerun_succeeds_after_its_time(session):
    """Once its time has passed, a re-run of a transient failure is a success with records."""
    emu = _emulator(seconds=0)
    async with serve(emu) as server:
        new_id = await _new_run(session, server, "flaky")
        item = await _get(session, server, new_id)
    summary = item["metrics"]["statusSummary"]
    assert summary == {"status": "success"}
    assert item["metrics"]["recordSummary"]["outputRecordCount"] == 7
    assert item["metrics"]["durationSummary"]["completedAtUTC"] >= item["createdAt"]
    assert emu.runs["flaky"].status == "failed"  # the original stays failed


async def test_a_poison_run_fails_every_time_with_its_errors(session):
    """A poison run's re-runs fail with its error codes, and so do re-runs of those re-runs."""
    emu = _emulator(seconds=0)
    async with serve(emu) as server:
        first = await _new_run(session, server, "poison")
        item = await _get(session, server, first)
        second = await _new_run(session, server, first)  # a failed re-run can be re-triggered
        again = await _get(session, server, second)
    for run in (item, again):
        summary = run["metrics"]["statusSummary"]
        assert summary["status"] == "failed"
        assert summary["errors"] == [{"code": code, "message": msg} for code, msg in MAPPING]
    assert emu.runs[second].poison


async def test_a_poison_run_without_errors_fails_with_a_connector_code(session):
    """A poison run with no errors of its own fails with Adobe's connector code."""
    emu = _emulator(seconds=0)
    async with serve(emu) as server:
        item = await _get(session, server, await _new_run(session, server, "bare-poison"))
    (error,) = item["metrics"]["statusSummary"]["errors"]
    assert (error["code"], error["message"]) == DEFAULT_ERROR


def test_runs_end_when_their_time_comes():
    """Finishing settles a run only once its time has passed, and never one replaced meanwhile."""
    now = [100.0]
    finishing = Finishing(clock=lambda: now[0])
    original = Run(id="o", flow_id="f", created_at=T0, input_records=3)
    first, second = original.retriggered(), original.retriggered()
    runs = {first.id: first, second.id: second}
    finishing.schedule(Lifecycle(seconds=5), original, first)
    finishing.schedule(Lifecycle(seconds=5), original, second)
    finishing.schedule(Lifecycle(seconds=None), original, original)  # never ends: not scheduled
    now[0] = 104.9
    finishing.settle(runs)
    assert {run.status for run in runs.values()} == {"inProgress"}
    runs[second.id] = Run(id=second.id, flow_id="f", status="cancelled")
    now[0] = 105.0
    finishing.settle(runs)
    assert (runs[first.id].status, runs[first.id].output_records) == ("success", 3)
    assert runs[second.id].status == "cancelled"
    assert len(finishing) == 0


def test_negative_run_time_is_refused():
    """A lifecycle cannot end runs before they start."""
    with pytest.raises(ValueError, match="cannot take"):
        Lifecycle(seconds=-1)


def test_load_runs_reads_poison_and_completion():
    """load_runs takes the poison mark and an ISO completion time."""
    emu = Emulator()
    emu.load_runs(
        [{"id": "p", "flow_id": "f", "poison": True, "completed_at": "2024-05-01T12:05:00Z"}]
    )
    run = emu.runs["p"]
    assert run.poison
    assert run.to_json()["updatedAt"] == int((T0 + dt.timedelta(minutes=5)).timestamp() * 1000)
