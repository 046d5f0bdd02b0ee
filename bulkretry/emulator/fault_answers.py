"""How a fault answers a Flow Service request: before the re-trigger (not applied) or after."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from bulkretry.emulator.faults import OVERSIZED
from bulkretry.emulator.replies import (
    drop,
    echoed,
    garbled,
    gateway_error,
    oversized,
    service_error,
    throttled,
)

if TYPE_CHECKING:
    from bulkretry.emulator.faults import Faults
    from bulkretry.emulator.flowservice import Service

#: Longer than any client timeout; the handler is woken when the server stops.
_HANG_SECONDS: Final = 3600.0
_TRICKLE_PAUSE: Final = 0.05
_INTERNAL: Final = (
    "An internal error has occurred. Please try again and contact customer support if the "
    "problem persists."
)
_UNAVAILABLE: Final = (
    "The service is temporarily unavailable. Please try again and contact customer support "
    "if the problem persists."
)


def _not_found(run_id: str) -> web.Response:
    message = (
        f"The requested runs resource {run_id} is not found. "
        "Verify the resource ID before trying again."
    )
    return service_error("FLOW-1439", 404, message)


async def oversized_fault(request: web.Request, faults: Faults, fault: str) -> web.StreamResponse:
    """A huge, endless, compressed-bomb or trickling answer, as ``fault`` names."""
    size = None if fault in {"endless_after", "trickle_after"} else faults.body_size
    pause = _TRICKLE_PAUSE if fault == "trickle_after" else 0.0
    return await oversized(request, size, bomb=fault == "bomb_after", pause=pause)


async def _after_fault(request: web.Request, emu: Service, fault: str) -> web.StreamResponse:
    """Misbehave once the re-trigger has been applied."""
    if fault == "error_after":
        return service_error("FLOW-1101", 500, _INTERNAL)
    if fault == "garbled_after":
        return garbled()
    if fault == "echo_after":
        return echoed(request.headers.get("Authorization", ""))
    if fault in OVERSIZED:
        return await oversized_fault(request, emu.faults, fault)
    if fault == "timeout_after":
        await emu.hang(_HANG_SECONDS)
    return drop(request)


def _before_fault(request: web.Request, faults: Faults, fault: str) -> web.StreamResponse:
    """Misbehave without applying anything."""
    if fault == "throttle":
        return throttled(faults.retry_after)
    if fault == "unavailable":
        return service_error("FLOW-1103", 503, _UNAVAILABLE)
    if fault == "not_found":
        return _not_found(request.match_info.get("run_id", ""))
    if fault == "unauthorized":
        return gateway_error("401013", 401, "Oauth token is not valid")
    return drop(request)
