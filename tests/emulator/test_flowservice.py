from __future__ import annotations

import datetime as dt
import re

import orjson
import pytest

from bulkretry.emulator import Emulator, Run, serve

from .support import HEADERS, retrigger

pytestmark = pytest.mark.anyio

ETAG = re.compile(r'^"[0-9a-f]{8}-0000-0200-0000-[0-9a-f]{12}"$')


async def test_retrigger_answers_new_run_and_counts(emu, server, session):
    """A failed run re-triggers: 200, a new uuid and quoted etag, one count, a new run."""
    status, headers, body = await retrigger(session, server, "failed-1")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    answer = orjson.loads(body)
    assert set(answer) == {"id", "etag"}
    assert re.fullmatch(r"[0-9a-f-]{36}", answer["id"])
    assert ETAG.match(answer["etag"])
    assert emu.stats.retriggers == {"failed-1": 1}
    assert emu.stats.responses == {200: 1}
    new_run = emu.runs[answer["id"]]
    assert (new_run.flow_id, new_run.status) == ("flow-a", "inProgress")
    assert emu.runs["failed-1"].status == "failed"


async def test_both_op_spellings_are_accepted(emu, server, session):
    """Both `re-trigger` and `RE_TRIGGER` apply, and the original stays retriable."""
    assert (await retrigger(session, server, "failed-1", op="re-trigger"))[0] == 200
    assert (await retrigger(session, server, "failed-1", op="RE_TRIGGER"))[0] == 200
    assert emu.stats.retriggers == {"failed-1": 2}


@pytest.mark.parametrize("op", [None, "retrigger", "delete"])
async def test_bad_op_is_a_service_400(emu, server, session, op):
    """A missing or unknown op is refused as a service error and applies nothing."""
    status, _, body = await retrigger(session, server, "failed-1", op=op)
    assert status == 400
    code = "1334" if op is None else "1401"  # sources-errors.md: empty query param, bad action
    assert orjson.loads(body)["type"].endswith(f"/FLOW-{code}-400")
    assert not emu.stats.retriggers


@pytest.mark.parametrize("run_id", ["failed-upper", "empty-success", "no-count-success"])
async def test_retriable_states(emu, server, session, run_id):
    """Failed in any case, and success with zero or absent output records, re-trigger."""
    assert (await retrigger(session, server, run_id))[0] == 200
    assert emu.stats.retriggers == {run_id: 1}


@pytest.mark.parametrize("run_id", ["full-success", "running"])
async def test_non_retriable_run_is_a_service_400(emu, server, session, run_id):
    """Runs that ingested records or are still running are refused with FLOW-1387."""
    status, _, body = await retrigger(session, server, run_id)
    assert status == 400
    answer = orjson.loads(body)
    message = (
        f"The flowRunId={run_id} is in an invalid state={emu.runs[run_id].status} for "
        "re-triggering. Please try again after some time and contact customer support if the "
        "problem persists."
    )
    assert answer == {
        "type": "https://ns.adobe.com/aep/errors/FLOW-1387-400",
        "title": "Bad Request",
        "status": 400,
        "report": {
            "detailed-message": message,
            "request-id": answer["report"]["request-id"],
        },
        "errorMessage": message,
        "errorDetails": message,
    }
    assert not emu.stats.retriggers


async def test_unknown_run_is_a_service_404(emu, server, session):
    """An unknown run ID is answered 404 FLOW-1439 without auto_create."""
    status, _, body = await retrigger(session, server, "nope")
    assert status == 404
    assert orjson.loads(body)["type"].endswith("/FLOW-1439-404")
    assert emu.stats.responses == {404: 1}


async def test_auto_create_treats_unknown_ids_as_failed(session):
    """With auto_create any ID re-triggers, and becomes a stored failed run."""
    emu = Emulator(auto_create=True)
    async with serve(emu) as server:
        assert (await retrigger(session, server, "random-id-42"))[0] == 200
    assert emu.stats.retriggers == {"random-id-42": 1}
    assert emu.runs["random-id-42"].status == "failed"


def _without(name: str) -> dict[str, str]:
    return {key: value for key, value in HEADERS.items() if key != name}


GATEWAY_CASES = [
    (
        _without("Authorization"),
        403,
        {"error_code": "403010", "message": "Oauth token is missing."},
    ),
    (
        {**HEADERS, "Authorization": "Bearer nope"},
        401,
        {"error_code": "401013", "message": "Oauth token is not valid"},
    ),
    (
        {**HEADERS, "Authorization": "Basic static-token"},
        401,
        {"error_code": "401013", "message": "Oauth token is not valid"},
    ),
    (
        _without("x-api-key"),
        403,
        {"error_code": "403000", "message": "Api Key is required"},
    ),
    (
        {**HEADERS, "x-api-key": "other"},
        403,
        {"error_code": "403003", "message": "Api Key is invalid"},
    ),
    (
        _without("x-gw-ims-org-id"),
        400,
        {"error_code": "400003", "message": "Missing header"},
    ),
    (
        {**HEADERS, "x-gw-ims-org-id": "not-an-org"},
        403,
        {"error_code": "403027", "message": "User region is missing"},
    ),
    (
        {**HEADERS, "x-gw-ims-org-id": "OTHER@AdobeOrg"},
        403,
        {"error_code": "403025", "message": "Profile is not valid"},
    ),
]


@pytest.mark.parametrize(("headers", "expected"), [(h, (s, b)) for h, s, b in GATEWAY_CASES])
async def test_gateway_refusals(emu, server, session, headers, expected):
    """Each gateway check answers its own status and error_code, and applies nothing."""
    answer = await retrigger(session, server, "failed-1", headers=headers)
    assert (answer[0], orjson.loads(answer[2])) == expected
    assert not emu.stats.retriggers


async def test_unknown_sandbox_is_a_service_403(server, session):
    """A sandbox other than the configured one is refused in the service's dialect."""
    headers = {**HEADERS, "x-sandbox-name": "dev"}
    status, _, body = await retrigger(session, server, "failed-1", headers=headers)
    assert status == 403
    answer = orjson.loads(body)
    assert answer["type"].endswith("/FLOW-1106-403")
    assert answer["errorMessage"].startswith("The requested operation is forbidden. Sandbox dev ")


async def test_missing_sandbox_header_means_prod(emu, server, session):
    """x-sandbox-name is optional in the OpenAPI file: the default sandbox, prod, is used."""
    status, _, _ = await retrigger(session, server, "failed-1", headers=_without("x-sandbox-name"))
    assert status == 200
    assert emu.stats.retriggers == {"failed-1": 1}


async def test_gateway_checks_run_in_order(server, session):
    """With no token and no api key, the missing token is what is reported."""
    headers = {"x-sandbox-name": "prod"}
    status, _, body = await retrigger(session, server, "failed-1", headers=headers)
    assert (status, orjson.loads(body)["error_code"]) == (403, "403010")


async def test_gateway_guards_reads_too(server, session):
    """GET requests go through the same gateway checks."""
    async with session.get(f"{server.base_url}/runs") as response:
        assert response.status == 403


async def test_requests_are_recorded(emu, server, session):
    """Each request is recorded with method, path, query, lower-case headers and run ID."""
    await retrigger(session, server, "failed-1", op="RE_TRIGGER")
    (recorded,) = emu.stats.requests
    assert (recorded.method, recorded.run_id) == ("POST", "failed-1")
    assert recorded.path == "/data/foundation/flowservice/runs/failed-1/action"
    assert recorded.query == {"op": "RE_TRIGGER"}
    assert recorded.query_all == (("op", "RE_TRIGGER"),)
    assert recorded.headers["x-gw-ims-org-id"] == "TESTORG@AdobeOrg"
    assert recorded.headers["content-type"] == "application/json"
    emu.stats.reset()
    assert not emu.stats.requests
    assert not emu.stats.retriggers


async def test_get_run_wraps_it_in_items(server, session):
    """GET /runs/{id} answers {"items": [run]} in the real layout, status verbatim."""
    async with session.get(f"{server.base_url}/runs/failed-upper", headers=HEADERS) as response:
        assert response.status == 200
        (item,) = (await response.json())["items"]
    assert item["id"] == "failed-upper"
    assert item["flowId"] == "flow-a"
    assert item["createdAt"] == int(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
    summary = item["metrics"]["statusSummary"]
    assert summary["status"] == "FAILED"
    assert summary["errors"][0]["code"] == "CONNECTOR-1001500"
    assert item["metrics"]["recordSummary"]["outputRecordCount"] == 0
    assert item["activities"] == []


async def test_absent_output_count_is_omitted(server, session):
    """A run with output_records=None has no outputRecordCount, as the API sometimes does."""
    url = f"{server.base_url}/runs/no-count-success"
    async with session.get(url, headers=HEADERS) as response:
        (item,) = (await response.json())["items"]
    assert "outputRecordCount" not in item["metrics"]["recordSummary"]
    assert "errors" not in item["metrics"]["statusSummary"]


async def test_get_unknown_run_is_404(server, session):
    """GET of an unknown run is a FLOW-1439 404."""
    async with session.get(f"{server.base_url}/runs/ghost", headers=HEADERS) as response:
        assert response.status == 404
        assert (await response.json())["status"] == 404


def test_load_runs_from_file(tmp_path):
    """load_runs reads a JSON list with Run's field names and ISO 8601 times."""
    path = tmp_path / "runs.json"
    path.write_bytes(
        orjson.dumps(
            [
                {
                    "id": "r1",
                    "flow_id": "f1",
                    "status": "failed",
                    "created_at": "2024-05-01T12:00:00Z",
                    "errors": [{"code": "C-1", "message": "boom"}],
                },
                {"id": "r2", "flow_id": "f1", "errors": [["C-2", "bang"]]},
            ]
        )
    )
    emu = Emulator()
    emu.load_runs(path)
    assert emu.runs["r1"].created_at == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    assert emu.runs["r1"].errors == (("C-1", "boom"),)
    assert emu.runs["r2"].errors == (("C-2", "bang"),)


def test_naive_created_at_is_refused():
    """A naive datetime would make epoch milliseconds ambiguous, so Run refuses it."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Run(id="x", flow_id="f", created_at=dt.datetime(2024, 1, 1))  # noqa: DTZ001
