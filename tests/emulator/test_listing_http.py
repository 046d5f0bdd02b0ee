from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest

from bulkretry.emulator import Emulator, Run, serve

from .support import HEADERS, T0

pytestmark = pytest.mark.anyio


def many_runs() -> list[Run]:
    """250 runs over three flows, mixed statuses, one minute apart (some sharing a time)."""
    statuses = ["failed", "success", "Failed", "inProgress"]
    return [
        Run(
            id=f"run-{i:03}",
            flow_id=f"flow-{i % 3}",
            status=statuses[i % 4],
            created_at=T0 + dt.timedelta(minutes=i // 2),
        )
        for i in range(250)
    ]


async def walk(session, server, params):
    """Follow _links.next to the end; return the items and the pages' hrefs."""
    items, hrefs = [], []
    url = f"{server.base_url}/runs"
    while True:
        async with session.get(url, params=params, headers=HEADERS) as response:
            assert response.status == 200
            body = await response.json()
        items += body["items"]
        if not body["_links"]:
            return items, hrefs
        href = body["_links"]["next"]["href"]
        hrefs.append(href)
        assert href.startswith("/runs?")
        url, params = server.base_url + href, None


@pytest.fixture
async def listing_server():
    """Serve an emulator holding many runs."""
    emu = Emulator()
    for run in many_runs():
        emu.add_run(run)
    async with serve(emu) as server:
        yield server


async def test_paging_with_or_and_since_filters(listing_server, session):
    """Pages join up with no duplicate or missing run, filters kept, newest first."""
    since = int((T0 + dt.timedelta(minutes=20)).timestamp() * 1000)
    params = [
        ("property", "flowId==flow-0,flowId==flow-2"),
        ("property", f"createdAt>={since}"),
        ("limit", "7"),
    ]
    items, hrefs = await walk(session, listing_server, params)
    expected = [
        run
        for run in many_runs()
        if run.flow_id in {"flow-0", "flow-2"} and run.created_ms >= since
    ]
    assert len(hrefs) == -(-len(expected) // 7) - 1  # a full last page has no next link
    assert sorted(item["id"] for item in items) == sorted(run.id for run in expected)
    keys = [(item["createdAt"], item["id"]) for item in items]
    assert keys == sorted(keys, reverse=True)
    query = parse_qs(urlsplit(hrefs[0]).query)
    assert query["property"] == [params[0][1], params[1][1]]
    assert query["limit"] == ["7"]


async def test_status_filter_is_case_insensitive(listing_server, session):
    """metrics.statusSummary.status==failed matches 'failed' and 'Failed'."""
    params = {"property": "metrics.statusSummary.status==failed", "limit": "100"}
    items, _ = await walk(session, listing_server, params)
    assert len(items) == 125
    assert {item["metrics"]["statusSummary"]["status"] for item in items} == {"failed", "Failed"}


async def test_strict_after_and_ascending_order(listing_server, session):
    """createdAt> excludes the bound, and orderby=createdAt pages oldest first."""
    bound = int((T0 + dt.timedelta(minutes=100)).timestamp() * 1000)
    params = {"property": f"createdAt>{bound}", "orderby": "createdAt", "limit": "9"}
    items, hrefs = await walk(session, listing_server, params)
    assert len(items) == 48
    assert "orderby=createdAt" in hrefs[0]
    assert [item["createdAt"] for item in items] == sorted(item["createdAt"] for item in items)


async def test_last_page_has_empty_links(listing_server, session):
    """A listing that fits one page answers _links {}; the default page size is 100."""
    async with session.get(f"{listing_server.base_url}/runs", headers=HEADERS) as response:
        body = await response.json()
    assert len(body["items"]) == 100
    assert "next" in body["_links"]
    params = {"property": "flowId==flow-1"}
    url = f"{listing_server.base_url}/runs"
    async with session.get(url, params=params, headers=HEADERS) as response:
        body = await response.json()
    assert len(body["items"]) == 83
    assert body["_links"] == {}


async def test_runs_added_between_pages_do_not_shift_pages(session):
    """A re-trigger between pages (a new newest run) neither repeats nor hides items."""
    emu = Emulator()
    for run in many_runs()[:30]:
        emu.add_run(run)
    async with serve(emu) as server:
        url = f"{server.base_url}/runs"
        async with session.get(url, params={"limit": "10"}, headers=HEADERS) as response:
            first = await response.json()
        emu.add_run(Run(id="brand-new", flow_id="flow-0"))
        next_url = server.base_url + first["_links"]["next"]["href"]
        async with session.get(next_url, headers=HEADERS) as response:
            second = await response.json()
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert len(set(ids)) == 20
    assert "brand-new" not in ids


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "ten"},
        {"property": "colour==red"},
        {"property": "createdAt>=yesterday"},
        {"property": "flowId>=a"},
        {"property": "nonsense"},
        {"continuationToken": "!!!"},
        {"orderby": "id"},
    ],
)
async def test_bad_queries_are_400(listing_server, session, params):
    """Malformed limits, filters, tokens and orderings are FLOW-1100 400s."""
    url = f"{listing_server.base_url}/runs"
    async with session.get(url, params=params, headers=HEADERS) as response:
        assert response.status == 400
        assert (await response.json())["type"].endswith("FLOW-1100-400")
