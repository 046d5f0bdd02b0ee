"""API fidelity: what bulkretry sends and what the emulator answers follow Adobe's contract.

Sources, and why each check exists:

- ``tests/fixtures/flow-service/flow-service.runs.yaml``: a trimmed copy of Adobe's Flow
  Service OpenAPI file (AdobeDocs/experience-platform-apis, Apache-2.0, so redistributable
  with its LICENSE and a modification notice; see the README beside it). Requests and 2xx
  bodies are validated with openapi-core against it.
- Where the OpenAPI file is silent or wrong, the Experience League tutorials decide, and
  each such fact is a constant below naming its page: re-trigger is spelled ``re-trigger``
  (retry-flows.md; the OpenAPI enum says ``RE_TRIGGER``, which bulkretry switches to when
  ``re-trigger`` is refused), the answer is ``{"id", "etag"}`` (retry-flows.md; the OpenAPI
  file claims a whole run with ``eTag``, which bulkretry reads too), runs carry ``etag`` and
  ``activities`` (monitor.md; the OpenAPI file says ``eTag`` and ``activites``), and error
  bodies, which the OpenAPI file leaves undescribed, follow troubleshooting.md (gateway),
  the access-label tutorial (Flow Service) and sources-errors.md (codes and titles).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson
import pytest
import yaml

import bulkretry
from bulkretry import ClientCredentials, JobSettings, Retriggered, Secret
from bulkretry._answers import HINTS, error_words, refuses_op
from bulkretry._backoff import Backoff
from bulkretry._discovery import ListingSettings, parse_since
from bulkretry._flowservice import RETRIGGER_OPS
from bulkretry.emulator import Faults, Run
from bulkretry.emulator.model import RecordedRequest

from .conftest import API_KEY, CLIENT_SECRET, ORG, TOKEN, cli_env, make_emulator, run_cli

if TYPE_CHECKING:
    from openapi_core import OpenAPI
    from openapi_core.datatypes import RequestParameters
    from openapi_schema_validator import OAS30Validator

pytestmark = pytest.mark.anyio

SPEC_DIR = Path(__file__).parent / "fixtures" / "flow-service"
SPEC: dict[str, Any] = yaml.safe_load((SPEC_DIR / "flow-service.runs.yaml").read_text())
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]


# openapi-core and its validators take a fifth of a second to import: every test process
# collects this module, and only the tests that validate pay for them.
@functools.cache
def openapi() -> OpenAPI:
    """The vendored spec, as openapi-core validates requests and answers against it."""
    from openapi_core import OpenAPI  # noqa: PLC0415 - see above

    return OpenAPI.from_dict(SPEC)


def oas30(schema: dict[str, Any]) -> OAS30Validator:
    """A JSON Schema validator in OpenAPI 3.0's dialect."""
    from openapi_schema_validator import OAS30Validator  # noqa: PLC0415 - see above

    return OAS30Validator(schema)


#: The OpenAPI server is ``//{environment}.adobe.io/data/foundation/flowservice``.
SPEC_HOST = "//platform.adobe.io"
BASE_PATH = "/data/foundation/flowservice"
FAST = Backoff(base=0)

#: retry-flows.md spells the operation ``re-trigger``; the OpenAPI enum only ``RE_TRIGGER``.
TUTORIAL_OP, SPEC_OP = "re-trigger", "RE_TRIGGER"
#: Keys a run carries that the OpenAPI schema does not declare, each documented in monitor.md.
DOCUMENTED_RUN_EXTRAS = frozenset({"etag", "activities", "metrics.statusSummary.errors"})
#: sort-and-filter.md: ``property=<path><op><value>``, commas inside a value mean OR.
PROPERTY = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_.\[\]]*)(==|!=|>=|<=|>|<)(?P<value>.+)$")
#: Run properties the guides filter on (createdAt is a top-level run property; the guide
#: says any property with a known path can be filtered on).
FILTERABLE = frozenset(
    {
        "id",
        "flowId",
        "state",
        "createdAt",
        "metrics.durationSummary.startedAtUTC",
        "metrics.statusSummary.status",
    }
)

#: troubleshooting.md, "Request header errors", verbatim; 429050 is the gateway's throttle.
GATEWAY_MESSAGES = {
    "403010": "Oauth token is missing.",
    "401013": "Oauth token is not valid",
    "403000": "Api Key is required",
    "403003": "Api Key is invalid",
    "400003": "Missing header",
    "403025": "Profile is not valid",
    "403027": "User region is missing",
    "429050": "Too many requests",
}
#: sources-errors.md titles for the codes the emulator uses; 1439-404 is the not-found
#: code the access-label tutorial quotes.
FLOW_TITLES = {
    "FLOW-1100-400": "Bad Request",
    "FLOW-1101-500": "Internal Error",
    "FLOW-1103-503": "Service Unavailable",
    "FLOW-1106-403": "Forbidden",
    "FLOW-1334-400": "Bad Request",
    "FLOW-1387-400": "Bad Request",
    "FLOW-1401-400": "Bad Request",
    "FLOW-1439-404": "Resource not found",
}
GATEWAY_ERROR = {
    "type": "object",
    "required": ["error_code", "message"],
    "additionalProperties": False,
    "properties": {
        "error_code": {"type": "string", "pattern": "^[0-9]{6}$"},
        "message": {"type": "string", "minLength": 1},
    },
}
FLOW_ERROR = {
    "type": "object",
    "required": ["type", "title", "status", "report", "errorMessage", "errorDetails"],
    "additionalProperties": False,
    "properties": {
        "type": {
            "type": "string",
            "pattern": r"^https://ns\.adobe\.com/aep/errors/FLOW-[0-9]{4}-[0-9]{3}$",
        },
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "report": {
            "type": "object",
            "required": ["detailed-message", "request-id"],
            "properties": {
                "detailed-message": {"type": "string", "minLength": 1},
                "request-id": {"type": "string"},
            },
        },
        "errorMessage": {"type": "string", "minLength": 1},
        "errorDetails": {"type": "string"},
    },
}
PLATFORM_ERROR = {
    "type": "object",
    "required": ["type", "status", "title", "detail"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "integer"},
        "title": {"type": "string"},
        "detail": {"type": "string"},
    },
}

HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "x-api-key": API_KEY,
    "x-gw-ims-org-id": ORG,
    "x-sandbox-name": "prod",
    "Content-Type": "application/json",
}


@dataclass
class SpecRequest:
    """A recorded request in openapi-core's request protocol, placed on Adobe's host."""

    method: str
    path: str
    parameters: RequestParameters
    host_url: str = SPEC_HOST
    body: bytes | None = None
    content_type: str = "application/json"


@dataclass
class SpecResponse:
    """An emulator answer in openapi-core's response protocol."""

    status_code: int
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def spec_request(
    method: str, path: str, query: tuple[tuple[str, str], ...], headers: Mapping[str, str]
) -> SpecRequest:
    """Build the protocol object; the tutorial's op spelling is mapped to the enum's."""
    from openapi_core.datatypes import RequestParameters  # noqa: PLC0415 - see openapi()
    from werkzeug.datastructures import Headers, ImmutableMultiDict  # noqa: PLC0415 - same

    query = tuple((k, SPEC_OP if (k, v) == ("op", TUTORIAL_OP) else v) for k, v in query)
    parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(dict(headers)))
    return SpecRequest(method.lower(), path, parameters)


def from_recorded(request: RecordedRequest) -> SpecRequest:
    """What the emulator received, as the spec validator wants it."""
    return spec_request(request.method, request.path, request.query_all, request.headers)


def operation(path_template: str, method: str) -> dict[str, Any]:
    """One operation of the vendored spec."""
    return SPEC["paths"][path_template][method]


def required_headers(path_template: str, method: str) -> set[str]:
    """Header parameters the spec marks required, lower-cased."""
    return {
        p["name"].lower()
        for p in operation(path_template, method)["parameters"]
        if p["in"] == "header" and p.get("required")
    }


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` into the vendored components."""
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def undeclared(instance: object, schema: dict[str, Any], where: str = "") -> list[str]:
    """Dotted paths present in ``instance`` that ``schema`` does not declare."""
    schema = resolve(schema)
    if isinstance(instance, dict) and "properties" in schema:
        found = []
        for key, value in instance.items():
            path = f"{where}.{key}" if where else key
            if key in schema["properties"]:
                found += undeclared(value, schema["properties"][key], path)
            else:
                found.append(path)
        return found
    if isinstance(instance, list) and "items" in schema:
        return [p for item in instance for p in undeclared(item, schema["items"], where)]
    return []


def check_run(run: dict[str, Any]) -> None:
    """A run object: spec types, only documented keys, and the fields bulkretry reads."""
    assert set(undeclared(run, SCHEMAS["FlowRunItemDTO"])) <= DOCUMENTED_RUN_EXTRAS
    for error in run["metrics"]["statusSummary"].get("errors", []):
        oas30(SCHEMAS["FlowRunErrorDTO"]).validate(error)
        assert set(error) == {"code", "message"}
    assert isinstance(run["createdAt"], int) and run["createdAt"] > 10**12  # epoch ms
    assert isinstance(run["metrics"]["statusSummary"]["status"], str)
    counts = run["metrics"]["recordSummary"]
    assert {"inputRecordCount", "failedRecordCount"} <= set(counts)


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Mapping[str, str], bytes]:
    """One raw exchange with the emulator."""
    async with session.request(method, url, **kwargs) as response:
        return response.status, response.headers, await response.read()


@pytest.fixture
async def session():
    """A plain aiohttp client, to read the emulator's answers byte for byte."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


def test_vendored_spec_is_valid_attributed_and_covers_our_operations():
    """The trimmed spec is valid OpenAPI 3.0, carries Adobe's license, and has our 3 calls."""
    from openapi_spec_validator import validate  # noqa: PLC0415 - see openapi()

    validate(SPEC)
    text = (SPEC_DIR / "flow-service.runs.yaml").read_text()
    assert "Apache License, Version 2.0" in text and "MODIFIED" in text
    assert "Apache License" in (SPEC_DIR / "LICENSE").read_text()
    assert "AdobeDocs/experience-platform-apis" in (SPEC_DIR / "README.md").read_text()
    assert {(p, m) for p, ops in SPEC["paths"].items() for m in ops} == {
        ("/runs", "get"),
        ("/runs/{RUN_ID}", "get"),
        ("/runs/{RUN_ID}/action", "post"),
    }
    op_param = next(
        p for p in operation("/runs/{RUN_ID}/action", "post")["parameters"] if p["name"] == "op"
    )
    assert op_param["required"] and op_param["schema"]["enum"] == [SPEC_OP]


async def test_retrigger_requests_follow_the_spec_and_tutorial(emulator, api_settings):
    """Each re-trigger POST has the spec's path, the tutorial's op and every required header."""
    assert RETRIGGER_OPS == (TUTORIAL_OP, SPEC_OP)  # the tutorial's first
    async with bulkretry.retrigger(
        ["run-a", "run-b"], api_settings, JobSettings(rate=0), backoff=FAST
    ) as job:
        outcomes = [outcome async for outcome in job]
    assert all(isinstance(o, Retriggered) for o in outcomes)
    needed = required_headers("/runs/{RUN_ID}/action", "post") | {"x-sandbox-name", "content-type"}
    assert needed == {
        "authorization",
        "x-api-key",
        "x-gw-ims-org-id",
        "x-sandbox-name",
        "content-type",
    }
    for request in emulator.stats.requests:
        assert request.method == "POST"
        assert request.path == f"{BASE_PATH}/runs/{request.run_id}/action"
        assert request.query_all == (("op", TUTORIAL_OP),)
        assert needed <= set(request.headers)
        assert request.headers["authorization"].startswith("Bearer ")
        assert request.headers["content-type"] == "application/json"
        assert request.headers["accept"] == "application/json"  # as Adobe's Postman collection
        openapi().validate_request(from_recorded(request))


async def test_both_op_spellings_are_accepted_and_others_refused(emulator, server, session):
    """The emulator applies the tutorial's and the enum's spelling, and refuses anything else."""
    url = f"{server.base_url}/runs/r1/action"
    for op in (TUTORIAL_OP, SPEC_OP):
        assert (await call(session, "POST", url, params={"op": op}, headers=HEADERS))[0] == 200
    status, _, body = await call(session, "POST", url, params={"op": "retrigger"}, headers=HEADERS)
    assert (status, error_words(status, body)[0]) == (400, "FLOW-1401-400")
    assert emulator.stats.retriggers == {"r1": 2}


async def test_listing_requests_follow_the_spec_and_filter_guide(emulator, api_settings):
    """Listing GETs use only declared query parameters, guide-syntax filters and next hrefs."""
    for n in range(25):
        emulator.add_run(Run(id=f"f-{n:02}", flow_id="flow-x", input_records=1, failed_records=1))
    emulator.auto_create = False
    settings = ListingSettings(flow_ids=("flow-x",), rate=0, page_size=7, since=parse_since("1h"))
    async with bulkretry.list_failed(api_settings, settings, backoff=FAST) as lister:
        records = [record async for record in lister.records()]
    assert len(records) == 25 and lister.errors == []
    requests = emulator.stats.requests
    assert len(requests) == 4
    declared = {p["name"] for p in operation("/runs", "get")["parameters"] if p["in"] == "query"}
    for number, request in enumerate(requests):
        assert (request.method, request.path) == ("GET", f"{BASE_PATH}/runs")
        assert {name for name, _ in request.query_all} <= declared
        assert required_headers("/runs", "get") | {"x-sandbox-name"} <= set(request.headers)
        assert int(request.query["limit"]) == 7
        properties = [v for k, v in request.query_all if k == "property"]
        assert "flowId==flow-x" in properties
        for value in properties:
            for clause in value.split(","):
                match = PROPERTY.match(clause)
                assert match and match["name"] in FILTERABLE, clause
        assert ("continuationToken" in request.query) == (number > 0)
        # openapi-core reads only the first ``property`` (the file says explode=false);
        # the guide's repeated form is checked above.
        openapi().validate_request(from_recorded(request))


async def test_run_objects_and_pages_validate_against_the_spec(emulator, server, session):
    """GET /runs pages and GET /runs/{id} validate as FlowRunsListResponse, keys documented."""
    emulator.add_run(
        Run(
            id="bad-1",
            flow_id="flow-y",
            status="FAILED",
            input_records=3,
            failed_records=3,
            errors=(("CONNECTOR-1001-500", "read failed"),),
        )
    )
    emulator.add_run(Run(id="ok-1", flow_id="flow-y", status="success", output_records=None))
    emulator.add_run(Run(id="run-1", flow_id="flow-y", status="inProgress"))
    checked = 0
    url, params = f"{server.base_url}/runs", {"property": "flowId==flow-y", "limit": "2"}
    while url:
        query = tuple(parse_qsl(urlsplit(url).query)) or tuple(params.items())
        status, headers, body = await call(session, "GET", url, params=params, headers=HEADERS)
        request = spec_request("GET", f"{BASE_PATH}/runs", query, HEADERS)
        openapi().validate_response(request, SpecResponse(status, body, headers))
        page = orjson.loads(body)
        for run in page["items"]:
            check_run(run)
            checked += 1
        href = page["_links"].get("next", {}).get("href")
        assert href is None or href.startswith("/runs?continuationToken=")
        url, params = (server.base_url + href if href else ""), None
    assert checked == 3 and page["_links"] == {}  # the last page's _links is empty
    status, headers, body = await call(
        session, "GET", f"{server.base_url}/runs/bad-1", headers=HEADERS
    )
    request = spec_request("GET", f"{BASE_PATH}/runs/bad-1", (), HEADERS)
    openapi().validate_response(request, SpecResponse(status, body, headers))
    (run,) = orjson.loads(body)["items"]
    check_run(run)
    assert run["metrics"]["statusSummary"]["errors"][0]["code"] == "CONNECTOR-1001-500"


async def test_count_query_validates_against_the_spec(emulator, server, session):
    """count=true answers only a count, which FlowRunsListResponse declares."""
    for n in range(3):
        emulator.add_run(Run(id=f"c{n}", flow_id="flow-c"))
    params = {"property": "flowId==flow-c", "count": "true"}
    status, headers, body = await call(
        session, "GET", f"{server.base_url}/runs", params=params, headers=HEADERS
    )
    request = spec_request("GET", f"{BASE_PATH}/runs", tuple(params.items()), HEADERS)
    openapi().validate_response(request, SpecResponse(status, body, headers))
    assert orjson.loads(body) == {"count": 3}


async def test_retrigger_answer_is_the_tutorials_and_fits_the_spec(server, session):
    """The answer is exactly {id, etag} with a quoted etag, valid for the spec's 200 too."""
    url = f"{server.base_url}/runs/r9/action"
    status, headers, body = await call(
        session, "POST", url, params={"op": TUTORIAL_OP}, headers=HEADERS
    )
    request = spec_request("POST", f"{BASE_PATH}/runs/r9/action", (("op", TUTORIAL_OP),), HEADERS)
    openapi().validate_response(request, SpecResponse(status, body, headers))
    answer = orjson.loads(body)
    strict = {
        **SCHEMAS["CreateFlowRunResponse"],
        "required": ["id", "etag"],
        "additionalProperties": False,
    }
    oas30(strict).validate(answer)
    assert answer["etag"].startswith('"') and answer["etag"].endswith('"')


async def test_the_spec_shaped_retrigger_answer_is_a_whole_run_with_etag_spelled_etag(
    emulator, server, session
):
    """retrigger_answer="spec" answers the OpenAPI file's FlowRunItemDTO, its key ``eTag``."""
    emulator.retrigger_answer = "spec"
    url = f"{server.base_url}/runs/r9/action"
    status, headers, body = await call(
        session, "POST", url, params={"op": SPEC_OP}, headers=HEADERS
    )
    request = spec_request("POST", f"{BASE_PATH}/runs/r9/action", (("op", SPEC_OP),), HEADERS)
    openapi().validate_response(request, SpecResponse(status, body, headers))
    answer = orjson.loads(body)
    assert set(undeclared(answer, SCHEMAS["FlowRunItemDTO"])) <= {"activities"}
    assert "etag" not in answer and answer["eTag"].startswith('"')
    assert answer["id"] in emulator.runs and emulator.stats.retriggers == {"r9": 1}


@pytest.mark.parametrize("op", [TUTORIAL_OP, SPEC_OP])
async def test_an_emulator_taking_one_spelling_refuses_the_other_by_naming_it(
    emulator, server, session, op
):
    """ops={...} narrows what is applied; the other spelling gets FLOW-1401-400, naming it."""
    other = SPEC_OP if op == TUTORIAL_OP else TUTORIAL_OP
    emulator.ops = frozenset({op})
    url = f"{server.base_url}/runs/r1/action"
    assert (await call(session, "POST", url, params={"op": op}, headers=HEADERS))[0] == 200
    status, _, body = await call(session, "POST", url, params={"op": other}, headers=HEADERS)
    assert (status, error_words(status, body)[0]) == (400, "FLOW-1401-400")
    assert refuses_op(body, other) and not refuses_op(body, op)
    assert emulator.stats.retriggers == {"r1": 1}
    with pytest.raises(ValueError, match="subset"):
        make_emulator(ops=frozenset({"retrigger"}))


@pytest.mark.parametrize(
    ("ops", "answer"),
    [
        pytest.param({TUTORIAL_OP}, "tutorial", id="tutorial-only"),
        pytest.param({SPEC_OP}, "spec", id="spec-only"),
        pytest.param({TUTORIAL_OP, SPEC_OP}, "spec", id="both-spec-answer"),
    ],
)
def test_cli_retry_works_whichever_spelling_and_answer_the_service_has(
    emulator, thread_server, ops, answer
):
    """Every run is re-triggered with its etag; RE_TRIGGER is used only after a refusal."""
    emulator.ops, emulator.retrigger_answer = frozenset(ops), answer
    ids = [f"run-{n}" for n in range(9)]
    result = run_cli(
        ["retry", "--rate", "0", "--concurrency", "3"],
        env=cli_env(thread_server),
        stdin="\n".join(ids).encode(),
    )
    assert result.code == 0, result.stderr
    lines = result.events("retriggered")
    assert sorted(line["run_id"] for line in lines) == ids
    for line in lines:
        assert line["etag"] == emulator.runs[line["new_run_id"]].etag
    sent = [request.query["op"] for request in emulator.stats.requests]
    switched = ops == {SPEC_OP}
    if switched:  # at most --concurrency refused before every worker moved over
        assert 1 <= sent.count(TUTORIAL_OP) <= 3 and len(sent) == 9 + sent.count(TUTORIAL_OP)
    else:
        assert sent == [TUTORIAL_OP] * 9
    assert result.stderr.count("refused op=re-trigger") == switched
    assert set(emulator.stats.retriggers.values()) == {1}


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in HEADERS.items() if k != name}


ACTION = "/runs/r/action"
GW, FLOW, GENERIC = GATEWAY_ERROR, FLOW_ERROR, PLATFORM_ERROR


def case(name, method, path, headers, expected, faults=None):  # noqa: PLR0913, PLR0917 - a table row
    """One refusal: request, optional faults, and (status, dialect, code) expected."""
    return pytest.param(method, path, headers, faults, *expected, id=name)


ERROR_CASES = [
    case("no-token", "POST", ACTION, _without("Authorization"), (403, GW, "403010")),
    case(
        "bad-token", "POST", ACTION, {**HEADERS, "Authorization": "Bearer x"}, (401, GW, "401013")
    ),
    case("no-key", "GET", "/runs", _without("x-api-key"), (403, GW, "403000")),
    case("bad-key", "GET", "/runs", {**HEADERS, "x-api-key": "nope"}, (403, GW, "403003")),
    case("no-org", "GET", "/runs", _without("x-gw-ims-org-id"), (400, GW, "400003")),
    case("bad-org", "GET", "/runs", {**HEADERS, "x-gw-ims-org-id": "acme"}, (403, GW, "403027")),
    case(
        "other-org",
        "POST",
        ACTION,
        {**HEADERS, "x-gw-ims-org-id": "X@AdobeOrg"},
        (403, GW, "403025"),
    ),
    case(
        "throttled",
        "POST",
        ACTION,
        HEADERS,
        (429, GW, "429050"),
        Faults(throttle=1.0, retry_after=3),
    ),
    case(
        "throttled-no-retry-after",
        "POST",
        ACTION,
        HEADERS,
        (429, GW, "429050"),
        Faults(throttle=1.0, retry_after=None),
    ),
    case(
        "other-sandbox",
        "GET",
        "/runs",
        {**HEADERS, "x-sandbox-name": "dev"},
        (403, FLOW, "FLOW-1106-403"),
    ),
    case("unknown-run", "GET", "/runs/ghost", HEADERS, (404, FLOW, "FLOW-1439-404")),
    case("not-retriable", "POST", "/runs/done/action", HEADERS, (400, FLOW, "FLOW-1387-400")),
    case("no-op", "POST", ACTION + "?", HEADERS, (400, FLOW, "FLOW-1334-400")),
    case("bad-filter", "GET", "/runs?property=colour==red", HEADERS, (400, FLOW, "FLOW-1100-400")),
    case(
        "error-after",
        "POST",
        ACTION,
        HEADERS,
        (500, FLOW, "FLOW-1101-500"),
        Faults(error_after=1.0),
    ),
    case(
        "unavailable",
        "POST",
        ACTION,
        HEADERS,
        (503, FLOW, "FLOW-1103-503"),
        Faults(unavailable=1.0),
    ),
    case(
        "no-content-type",
        "POST",
        ACTION,
        _without("Content-Type"),
        (400, GENERIC, "BadRequestError"),
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "faults", "status", "dialect", "code"),
    ERROR_CASES,
)
async def test_error_bodies_follow_the_documented_dialects(  # noqa: PLR0913, PLR0917 - one per column
    emulator, server, session, method, path, headers, faults, status, dialect, code
):
    """Each refusal has the documented status, body shape, code, title or message."""
    emulator.auto_create = False
    emulator.add_run(Run(id="r", flow_id="f"))
    emulator.add_run(Run(id="done", flow_id="f", status="success", output_records=5))
    if faults is not None:
        emulator.faults = faults
    url = server.base_url + path
    params = None if "?" in path else ({"op": TUTORIAL_OP} if path.endswith("/action") else None)
    got, response_headers, body = await call(session, method, url, params=params, headers=headers)
    assert got == status
    answer = orjson.loads(body)
    oas30(dialect).validate(answer)
    assert error_words(got, body)[0] == code
    if dialect is GATEWAY_ERROR:
        assert answer["message"] == GATEWAY_MESSAGES[code]
    if dialect is FLOW_ERROR:
        assert answer["type"].endswith(f"-{status}") and answer["status"] == status
        assert answer["title"] == FLOW_TITLES[code]
        assert error_words(got, body)[1] == answer["errorMessage"]
    if status == 429:
        expected = None if faults.retry_after is None else str(faults.retry_after)
        assert response_headers.get("Retry-After") == expected  # seconds, sometimes absent
    # Only error_after is applied before it answers: the client cannot tell, hence uncertain.
    assert sum(emulator.stats.retriggers.values()) == (status == 500)


async def test_missing_sandbox_header_means_the_default_sandbox(emulator, server, session):
    """x-sandbox-name is optional in the spec: without it the org's default (prod) is used."""
    url = f"{server.base_url}/runs/r1/action"
    status, _, _ = await call(
        session, "POST", url, params={"op": TUTORIAL_OP}, headers=_without("x-sandbox-name")
    )
    assert status == 200 and emulator.stats.retriggers == {"r1": 1}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(  # the access-label tutorial's Flow Service 404, abridged
            {
                "type": "https://ns.adobe.com/aep/errors/FLOW-1439-404",
                "title": "Resource not found",
                "status": 404,
                "report": {"detailed-message": "The requested flows resource x is not found."},
                "errorMessage": "The requested flows resource x is not found.",
            },
            ("FLOW-1439-404", "The requested flows resource x is not found."),
            id="flow",
        ),
        pytest.param(
            {
                "type": "https://ns.adobe.com/aep/errors/FLOW-1106-403",
                "title": "Forbidden",
                "status": 403,
                "report": {"detailed-message": "only the report says it"},
            },
            ("FLOW-1106-403", "only the report says it"),
            id="flow-report-only",
        ),
        pytest.param(  # troubleshooting.md, "Valid content-type not specified"
            {
                "type": "/placeholder/type/uri",
                "status": 400,
                "title": "BadRequestError",
                "detail": "A valid content-type must be specified",
            },
            ("BadRequestError", "A valid content-type must be specified"),
            id="generic",
        ),
        pytest.param(
            {"error_code": "403025", "message": "Profile is not valid"},
            ("403025", "Profile is not valid"),
            id="gateway",
        ),
    ],
)
def test_error_words_read_every_documented_dialect(body, words):
    """The API's code and message are found whichever dialect answered (no ``detail`` needed)."""
    assert error_words(403, orjson.dumps(body)) == words


async def test_ims_token_request_is_a_form_and_its_answer_counts_seconds(
    emulator, server, api_settings, session
):
    """The IMS token request is a client_credentials form; expires_in is whole seconds."""
    credentials = ClientCredentials(
        client_id=API_KEY,
        client_secret=Secret(CLIENT_SECRET),
        scopes="openid,AdobeID",
        ims_url=server.ims_url,
    )
    settings = replace(api_settings, credentials=credentials)
    async with bulkretry.retrigger(["t1"], settings, JobSettings(rate=0), backoff=FAST) as job:
        assert all([isinstance(o, Retriggered) async for o in job])
    assert emulator.stats.token_content_types == ["application/x-www-form-urlencoded"]
    assert emulator.stats.token_scopes == ["openid,AdobeID"]
    form = {
        "grant_type": "client_credentials",
        "client_id": API_KEY,
        "client_secret": CLIENT_SECRET,
        "scope": "openid",
    }
    status, _, body = await call(session, "POST", server.ims_url, data=form)
    answer = orjson.loads(body)
    assert status == 200 and answer["token_type"] == "bearer"
    assert isinstance(answer["expires_in"], int) and answer["expires_in"] > 0
    status, _, body = await call(session, "POST", server.ims_url, json=form)
    assert status == 400 and orjson.loads(body)["error"] == "unsupported_grant_type"


@pytest.mark.parametrize(
    ("flags", "words", "hint"),
    [
        pytest.param(
            ["--org", "WRONG@AdobeOrg"],
            "403025: Profile is not valid",
            "wrong organization",
            id="wrong-org",
        ),
        pytest.param(
            ["--org", "not-an-org-id"],
            "403027: User region is missing",
            "product profile",
            id="no-product-profile",
        ),
        pytest.param(
            ["--sandbox", "dev"],
            "FLOW-1106-403: The requested operation is forbidden",
            "--sandbox",
            id="wrong-sandbox",
        ),
    ],
)
def test_cli_failed_lines_show_code_message_and_hint(thread_server, flags, words, hint):
    """Refused re-triggers (failed line) and listings (stderr) say code: message (hint)."""
    env = cli_env(thread_server)
    retried = run_cli(["retry", "--rate", "0", *flags], env=env, stdin=b"run-1\n")
    assert retried.code == 1, retried.stderr
    (failed,) = retried.events("failed")
    assert failed["error"].startswith(words) and hint in failed["error"]
    listed = run_cli(["failed", "--flow-id", "f", "--rate", "0", *flags], env=env)
    assert listed.code == 1 and words in listed.stderr and hint in listed.stderr


def test_hints_cover_the_common_refusals():
    """Wrong org, missing product profile, wrong sandbox and missing key each have a hint."""
    assert {"403025", "403027", "FLOW-1106-403", "403000", "403003", "401013"} <= set(HINTS)
