"""The history's follow-through records on a real SQLite file and a real PostgreSQL server."""

import pytest

from bulkretry import Retriggered
from bulkretry._history import History
from bulkretry._lineage import Claim, ClaimPolicy
from bulkretry._settings import HistoryLocation
from bulkretry._text import Secret

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path):
    """A fresh history of each kind."""
    if request.param == "sqlite":
        return HistoryLocation(path=tmp_path / "history.sqlite3")
    return HistoryLocation(url=Secret(request.getfixturevalue("pg_url")))


async def test_an_end_recorded_before_the_re_trigger_keeps_both(location):
    """A new run's end recorded before its re-trigger is committed keeps its status and lineage."""
    async with await History.open(location, org="o", sandbox="s") as history:
        await history.commit([], [Claim(run_id="orig", flow_id="f1")], ClaimPolicy())
        await history.record_finished("new", status="success", records=5)
        done = Retriggered(run_id="orig", new_run_id="new", etag=None, attempts=1, status=200)
        await history.commit([done], [], ClaimPolicy())
        assert await history.pending() == []
        (chain,) = await history.chains(since=None, flow_ids=())
    assert (chain.run_id, chain.flow_id, chain.generation) == ("orig", "f1", 1)
    assert (chain.latest_run_id, chain.latest_status) == ("new", "success")
