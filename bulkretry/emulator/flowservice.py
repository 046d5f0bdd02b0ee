"""Flow Service routes behind an emulated Adobe I/O gateway."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final, Literal, Protocol
from urllib.parse import urlencode

from aiohttp import web

from bulkretry.emulator.fault_answers import _after_fault, _before_fault, _not_found
from bulkretry.emulator.faults import BEFORE, LINK_FAULT_NAMES, ODD_IDS
from bulkretry.emulator.listing import BadQueryError, count, page
from bulkretry.emulator.model import Emulated, RecordedRequest
from bulkretry.emulator.replies import (
    Dropped,
    gateway_error,
    json_reply,
    odd_id,
    platform_error,
    service_error,
    throttled,
)

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from bulkretry.emulator.model import Run


class Tokens(Protocol):
    """The gateway's question about a bearer token."""

    def valid(self, token: str) -> bool:
        """Whether the token is accepted now."""


class Service(Emulated, Protocol):
    """What the Flow Service routes use of the emulator."""

    api_key: str
    org_id: str
    sandbox: str
    ops: frozenset[str]
    retrigger_answer: Literal["tutorial", "spec"]
    run_answer: Literal["items", "run"]

    @property
    def tokens(self) -> Tokens:
        """Who may call."""

    @property
    def runs(self) -> dict[str, Run]:
        """Every run, as the API would answer now."""

    def lookup(self, run_id: str) -> Run | None:
        """The run, or None when it does not exist."""

    def retrigger(self, run: Run) -> Run:
        """Apply a re-trigger; the new run."""

    async def hang(self, seconds: float) -> None:
        """Sleep like a stuck upstream until the server stops."""


BASE_PATH: Final = "/data/foundation/flowservice"
#: The tutorial's spelling and the OpenAPI enum's; an ``Emulator`` accepts both by default.
RETRIGGER_OPS: Final = frozenset({"re-trigger", "RE_TRIGGER"})
#: What Adobe uses when ``x-sandbox-name`` is absent.
DEFAULT_SANDBOX: Final = "prod"
#: Methods whose payload must be declared ``application/json`` (troubleshooting guide).
_WITH_PAYLOAD: Final = frozenset({"POST", "PUT", "PATCH"})
_WILD_DATES: Final = (1e20, 1e300, -1e20)
EMULATOR: Final = web.AppKey["Service"]("emulator")


def _record(request: web.Request) -> RecordedRequest:
    return RecordedRequest(
        method=request.method,
        path=request.path,
        query={key: request.query[key] for key in request.query},
        query_all=tuple(request.query.items()),
        headers={key.lower(): request.headers[key] for key in request.headers},
        at=time.monotonic(),
        run_id=request.match_info.get("run_id"),
    )


def _gateway_refusal(  # noqa: PLR0911 - one return per gateway check, in its order
    emu: Service, request: web.Request
) -> web.Response | None:
    """Refuse as Adobe I/O does before the service sees the request, in the gateway's order.

    Codes and messages are the troubleshooting guide's. ``x-sandbox-name`` is optional in
    the OpenAPI file: without it the organisation's default sandbox (``prod``) is used.
    """
    headers = request.headers
    authorization = headers.get("Authorization")
    if authorization is None:
        return gateway_error("403010", 403, "Oauth token is missing.")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not emu.tokens.valid(token.strip()):
        return gateway_error("401013", 401, "Oauth token is not valid")
    api_key = headers.get("x-api-key")
    if not api_key:
        return gateway_error("403000", 403, "Api Key is required")
    if api_key != emu.api_key:
        return gateway_error("403003", 403, "Api Key is invalid")
    org_id = headers.get("x-gw-ims-org-id")
    if not org_id:
        return gateway_error("400003", 400, "Missing header")
    if not org_id.endswith("@AdobeOrg"):
        return gateway_error("403027", 403, "User region is missing")
    if org_id != emu.org_id:
        return gateway_error("403025", 403, "Profile is not valid")
    sandbox = headers.get("x-sandbox-name") or DEFAULT_SANDBOX
    if sandbox != emu.sandbox:
        message = (
            f"The requested operation is forbidden. Sandbox {sandbox} is not accessible "
            "with the provided credentials."
        )
        return service_error("FLOW-1106", 403, message)
    return None


def _content_type_refusal(request: web.Request) -> web.Response | None:
    """POST, PUT and PATCH must say ``Content-Type: application/json``, body or not."""
    if request.method in _WITH_PAYLOAD and request.content_type != "application/json":
        return platform_error(400, "BadRequestError", "A valid content-type must be specified")
    return None


@web.middleware
async def _front_door(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record, delay, then let the gateway refuse or the service answer; count the status."""
    emu = request.app[EMULATOR]
    emu.stats.requests.append(_record(request))
    if emu.faults.latency:
        await asyncio.sleep(emu.faults.latency)
    response = (
        _gateway_refusal(emu, request) or _content_type_refusal(request) or await handler(request)
    )
    emu.stats.responses[0 if isinstance(response, Dropped) else response.status] += 1
    return response


async def _retrigger(request: web.Request) -> web.StreamResponse:  # noqa: PLR0911 - one per outcome
    """Apply a re-trigger unless a check or a fault says otherwise."""
    emu = request.app[EMULATOR]
    run_id = request.match_info["run_id"]
    op = request.query.get("op")
    if not op:
        message = "The query param : op cannot be empty. Please provide valid op and try again."
        return service_error("FLOW-1334", 400, message)
    if op not in emu.ops:
        message = (
            f"The provided flow run action={op} is not supported. "
            "Please provide a valid flow run action and try again."
        )
        return service_error("FLOW-1401", 400, message)
    faults = emu.faults
    if emu.plan.over_rate(faults, time.monotonic()):
        return throttled(1)
    fault = emu.plan.retrigger_fault(faults, run_id)
    if fault in BEFORE:
        return _before_fault(request, faults, fault)
    run = emu.lookup(run_id)
    if run is None:
        return _not_found(run_id)
    if not run.retriable:
        message = (
            f"The flowRunId={run_id} is in an invalid state={run.status} for re-triggering. "
            "Please try again after some time and contact customer support if the problem persists."
        )
        return service_error("FLOW-1387", 400, message)
    new_run = emu.retrigger(run)
    if fault in ODD_IDS:
        return odd_id(fault, new_run.id, request.headers.get("Authorization", ""))
    if fault != "ok":
        return await _after_fault(request, emu, fault)
    if emu.retrigger_answer == "spec":  # the OpenAPI file's FlowRunItemDTO, with ``eTag``
        run_json = new_run.to_json()
        return json_reply({("eTag" if key == "etag" else key): v for key, v in run_json.items()})
    return json_reply({"id": new_run.id, "etag": new_run.etag})  # the tutorial's answer


async def _get_run(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    fault = emu.plan.get_fault(emu.faults)
    if fault in BEFORE:
        return _before_fault(request, emu.faults, fault)
    run_id = request.match_info["run_id"]
    run = emu.lookup(run_id)
    if run is None:
        return _not_found(run_id)
    if fault != "ok":
        return await _after_fault(request, emu, fault)
    # The tutorial's answer is a list of one; the OpenAPI file's, the run itself.
    return json_reply(run.to_json() if emu.run_answer == "run" else {"items": [run.to_json()]})


async def _list_runs(request: web.Request) -> web.StreamResponse:
    emu = request.app[EMULATOR]
    fault = emu.plan.list_fault(emu.faults)
    if fault in BEFORE:
        return _before_fault(request, emu.faults, fault)
    try:
        if request.query.get("count") == "true":
            return json_reply({"count": count(emu.runs.values(), request.query)})
        listed = page(emu.runs.values(), request.query)
    except BadQueryError as exc:
        message = f"The request could not be processed. {exc}"
        return service_error("FLOW-1100", 400, message)
    next_href = listed.next_href
    if fault in LINK_FAULT_NAMES:
        next_href = _bad_link(request, fault, next_href)
    elif fault not in {"ok", "wild_dates"}:
        return await _after_fault(request, emu, fault)
    links = {} if next_href is None else {"next": {"href": next_href}}
    items = [run.to_json() for run in listed.items]
    if fault == "wild_dates":  # createdAt no calendar holds: 1e20 and 1e300 ms, in turn
        for n, item in enumerate(items):
            item["createdAt"] = _WILD_DATES[n % len(_WILD_DATES)]
    return json_reply({"items": items, "_links": links})


def _bad_link(request: web.Request, fault: str, next_href: str | None) -> str | None:
    """A next link that loops (to this page, to the first) or names another collection."""
    if fault == "self_link":
        return f"/runs?{request.query_string}"
    if fault == "first_link":
        first = [(k, v) for k, v in request.query.items() if k != "continuationToken"]
        return "/runs?" + urlencode(first)
    # The OpenAPI file's example: the right token, on the connections collection.
    return next_href and next_href.replace("/runs?", "/connections?", 1)


def make_flow_service(emu: Service) -> web.Application:
    """Build the sub-application mounted at ``BASE_PATH``; its middleware is the gateway."""
    app = web.Application(middlewares=[_front_door])
    app[EMULATOR] = emu
    app.add_routes(
        [
            web.post("/runs/{run_id}/action", _retrigger),
            web.get("/runs/{run_id}", _get_run),
            web.get("/runs", _list_runs),
        ]
    )
    return app
