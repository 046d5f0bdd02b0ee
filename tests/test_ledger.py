import sqlite3
from contextlib import AsyncExitStack
from datetime import datetime

import anyio
import pytest

from bulkretry import JobSettings
from bulkretry._history_ledger import HistoryLedger
from bulkretry._history_location import HistoryLocation
from bulkretry._open_ledger import open_ledger


@pytest.mark.anyio
async def test_a_claim_outlasts_an_op_switch_resend_queued_behind_the_rate(tmp_path):
    """The lease covers the request, a wait behind --concurrency others at --rate, the resend."""
    path = tmp_path / "history.sqlite3"
    settings = JobSettings(
        rate=0.1, concurrency=10, timeout=30.0, history=HistoryLocation(path=path)
    )
    async with AsyncExitStack() as stack:
        ledger = await open_ledger(stack, settings, ("ORG@AdobeOrg", "prod"), lambda _: None)
        assert isinstance(ledger, HistoryLedger)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ledger.serve)
            assert await ledger.claim("run-1", None) is None
            tasks.cancel_scope.cancel()
    with sqlite3.connect(path) as db:
        claimed, lease = db.execute(
            "SELECT claimed_at, lease_until FROM bulkretry_runs WHERE run_id = 'run-1'"
        ).fetchone()
    held = datetime.fromisoformat(lease) - datetime.fromisoformat(claimed)
    # 30 s request + 10 / 0.1 s queue + 30 s resend, and the margin on top.
    assert held.total_seconds() >= 30 + 100 + 30
