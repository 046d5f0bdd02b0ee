"""Constants and helpers shared by the emulator tests."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from bulkretry.emulator import Run, Server

if TYPE_CHECKING:
    import aiohttp

HEADERS = {
    "Authorization": "Bearer static-token",
    "x-api-key": "test-client-id",
    "x-gw-ims-org-id": "TESTORG@AdobeOrg",
    "x-sandbox-name": "prod",
    "Content-Type": "application/json",
}
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
CONNECTION_ERROR = "CONNECTOR-1001500"


def sample_runs() -> list[Run]:
    """Cover every retriability case the API distinguishes."""
    error = ((CONNECTION_ERROR, "The connection to the source failed."),)
    return [
        Run(
            id="failed-1",
            flow_id="flow-a",
            created_at=T0,
            input_records=10,
            failed_records=10,
            errors=error,
        ),
        Run(id="failed-upper", flow_id="flow-a", status="FAILED", created_at=T0, errors=error),
        Run(
            id="empty-success", flow_id="flow-b", status="success", created_at=T0, output_records=0
        ),
        Run(
            id="no-count-success",
            flow_id="flow-b",
            status="success",
            created_at=T0,
            output_records=None,
        ),
        Run(
            id="full-success",
            flow_id="flow-b",
            status="success",
            created_at=T0,
            input_records=5,
            output_records=5,
        ),
        Run(id="running", flow_id="flow-b", status="inProgress", created_at=T0),
    ]


async def retrigger(
    session: aiohttp.ClientSession,
    server: Server,
    run_id: str,
    *,
    op: str | None = "re-trigger",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """POST a re-trigger and return status, headers and raw body."""
    params = {} if op is None else {"op": op}
    async with session.post(
        f"{server.base_url}/runs/{run_id}/action",
        params=params,
        headers=HEADERS if headers is None else headers,
    ) as response:
        return response.status, dict(response.headers), await response.read()
