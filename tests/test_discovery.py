"""`bulkretry failed`: paging, filters, and the pipe into `bulkretry retry`."""

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta

import anyio
import pytest

import bulkretry
from bulkretry import Secret
from bulkretry._auth import StaticToken
from bulkretry._backoff import Backoff
from bulkretry._discovery import (
    Lister,
    ListingSettings,
    continuation_token,
    parse_since,
    retryable,
)
from bulkretry._errors import UsageError
from bulkretry.emulator import Faults, Run

from .conftest import cli_env, parse_lines, run_cli
from .forked import ForkedProcess

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC)
BASE_PATH = "/data/foundation/flowservice"


def seed(emulator, flows=("flow-a", "flow-b", "flow-c"), per_flow=120):
    """Each flow gets failed, successful, zero-record and in-progress runs over 10 days."""
    expected = {"failed": set(), "empty": set()}
    for flow in flows:
        for n in range(per_flow):
            kind = ("failed", "success", "empty", "Failed", "inProgress")[n % 5]
            run_id = f"{flow}-run-{n:04d}"
            created = NOW - timedelta(hours=2 * n)
            status = "success" if kind == "empty" else kind
            records = 0 if kind in {"empty", "failed", "Failed"} else 500
            emulator.add_run(
                Run(
                    id=run_id,
                    flow_id=flow,
                    status=status,
                    created_at=created,
                    output_records=records,
                    errors=(("CONNECTOR-1001500", "source read failed"),)
                    if kind.lower() == "failed"
                    else (),
                )
            )
            if kind.lower() == "failed":
                expected["failed"].add((run_id, created))
            elif kind == "empty":
                expected["empty"].add((run_id, created))
    emulator.auto_create = False
    return expected


async def listing(api_settings, **kwargs):
    """List through the public API with small pages and zero waits."""
    settings = ListingSettings(**({"rate": 0, "page_size": 7} | kwargs))
    async with bulkretry.list_failed(api_settings, settings, backoff=Backoff(base=0)) as lister:
        records = [record async for record in lister.records()]
    return records, lister


async def test_listing_is_exact_across_many_pages(emulator, api_settings):
    """Every failed run of the named flows, nothing else, no duplicates, across small pages."""
    expected = seed(emulator)
    records, lister = await listing(api_settings, flow_ids=("flow-a", "flow-b"))
    ids = [r.run_id for r in records]
    assert len(ids) == len(set(ids))
    assert set(ids) == {
        run_id for run_id, _ in expected["failed"] if not run_id.startswith("flow-c")
    }
    assert lister.pages >= 2 * (120 // 7) and lister.errors == []
    sample = next(r for r in records if r.run_id == "flow-a-run-0000")
    assert sample.fields() == {
        "run_id": "flow-a-run-0000",
        "flow_id": "flow-a",
        "status": "failed",
        "created_at": sample.created_at,
        "records": 0,
        "error": "CONNECTOR-1001500: source read failed",
    }
    assert sample.created_at.endswith("Z")
    requests = [r for r in emulator.stats.requests if r.method == "GET"]
    assert all(r.path == "/data/foundation/flowservice/runs" for r in requests)


async def test_include_empty_and_since(emulator, api_settings):
    """--include-empty adds zero-record successes; --since keeps runs created at or after it."""
    expected = seed(emulator, flows=("flow-a",))
    since = NOW - timedelta(hours=48)
    records, _ = await listing(api_settings, flow_ids=("flow-a",), include_empty=True, since=since)
    wanted = {
        run_id for run_id, created in expected["failed"] | expected["empty"] if created >= since
    }
    assert {r.run_id for r in records} == wanted
    assert {r.status for r in records} == {"failed", "success"}


async def test_throttled_pages_are_retried(emulator, api_settings):
    """A 429 on a page is retried under the same rules as re-triggers."""
    seed(emulator, flows=("flow-a",), per_flow=30)
    emulator.faults = Faults(retry_after=0, list_script=["throttle", "ok", "unavailable"])
    records, lister = await listing(api_settings, flow_ids=("flow-a",))
    assert lister.errors == []
    assert len(records) == 12


def test_parse_since_accepts_durations_and_iso_times():
    """90m, 24h, 7d and ISO 8601 (with Z, offsets or naive as UTC) are understood."""
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-11-22T00:00:00Z", now) == datetime(2026, 11, 22, tzinfo=UTC)
    assert parse_since("2026-11-22T00:00:00", now) == datetime(2026, 11, 22, tzinfo=UTC)
    with pytest.raises(UsageError, match="duration"):
        parse_since("yesterday", now)


def test_retryable_compares_status_case_insensitively():
    """FAILED and Failed count as failed; runs without metrics are ignored."""
    run = {
        "id": "r",
        "flowId": "f",
        "createdAt": 0,
        "metrics": {"statusSummary": {"status": "FAILED"}},
    }
    record = retryable(run, "f", include_empty=False)
    assert record is not None and record.status == "failed" and record.records == 0
    assert retryable({"id": "x"}, "f", include_empty=True) is None
    assert retryable({"id": "x", "metrics": ["odd"]}, "f", include_empty=True) is None
    assert (
        retryable({"id": "x", "metrics": {"statusSummary": "odd"}}, "f", include_empty=True) is None
    )


def test_cli_failed_then_retry_in_one_pipe(emulator, thread_server):
    """`failed | retry` re-triggers exactly the failed runs and both exit 0."""
    expected = seed(emulator, flows=("flow-a", "flow-b"), per_flow=150)
    env = cli_env(thread_server)
    listed = run_cli(
        ["failed", "--flow-id", "flow-a", "--flow-id", "flow-b", "--rate", "0"], env=env
    )
    assert listed.code == 0, listed.stderr
    assert f"{len(expected['failed'])} retryable runs in 2 flows" in listed.stderr
    assert {line["run_id"] for line in listed.lines} == {r for r, _ in expected["failed"]}
    lister = ForkedProcess(
        ["failed", "--flow-id", "flow-a", "--flow-id", "flow-b", "--rate", "0"],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    retry = ForkedProcess(
        ["retry", "--rate", "0", "--concurrency", "16"], env=env, stdin=lister.stdout
    )
    lister.stdout.close()  # the pipe joins the two commands alone, as a shell leaves it
    stdout, stderr = retry.communicate(timeout=120)
    assert retry.returncode == 0, stderr
    assert lister.wait(timeout=30) == 0, lister.stderr.read()
    lister.stderr.close()
    lines = parse_lines(stdout)
    assert lines[-1]["retriggered"] == len(expected["failed"])
    assert set(emulator.stats.retriggers) == {r for r, _ in expected["failed"]}
    assert set(emulator.stats.retriggers.values()) == {1}


def test_cli_failed_usage_and_api_errors(thread_server):
    """No --flow-id or a bad --since is exit 2; a refused listing is exit 1 with a message."""
    env = cli_env(thread_server)
    assert run_cli(["failed"], env=env).code == 2
    bad_since = run_cli(["failed", "--flow-id", "f", "--since", "someday"], env=env)
    assert bad_since.code == 2 and "--since" in bad_since.stderr
    refused = run_cli(["failed", "--flow-id", "f", "--org", "WRONG@AdobeOrg"], env=env)
    assert refused.code == 1 and "403025" in refused.stderr
    assert refused.stdout == b""


class PagesWithoutFilters:
    """A Flow Service client double whose next link drops the filters, as a real one might."""

    def __init__(self, href):
        self.calls = []
        self.href = href
        self.tokens = StaticToken(Secret("token-for-the-double"))

    async def get_json(self, path, params=()):
        """Page one links on without filters; page two mixes in another flow's run."""
        self.calls.append((path, list(params)))
        run = {"createdAt": 0, "metrics": {"statusSummary": {"status": "failed"}}}
        if len(self.calls) == 1:
            return {
                "items": [run | {"id": "a-1", "flowId": "flow-a"}],
                "_links": {"next": {"href": self.href}},
            }
        return {
            "items": [
                run | {"id": "b-1", "flowId": "flow-b"},
                run | {"id": "a-2", "flowId": "flow-a"},
            ],
            "_links": {},
        }


@pytest.mark.parametrize(
    "href",
    [
        "/runs?continuationToken=abc",
        "/connections?continuationToken=abc",  # the OpenAPI file's example
        "https://elsewhere.example/fs/runs?continuationToken=abc",
    ],
)
async def test_a_next_link_lends_only_its_token_to_our_runs_query_with_our_filters(href):
    """Whatever the link's path or host, page two is asked of /runs with our filters."""
    client = PagesWithoutFilters(href)
    async with Lister(client, ListingSettings(flow_ids=("flow-a",), rate=0)) as lister:
        records = [record async for record in lister.records()]
    assert [r.run_id for r in records] == ["a-1", "a-2"]
    filters = [("property", "flowId==flow-a"), ("limit", "100")]
    assert client.calls == [("/runs", filters), ("/runs", [*filters, ("continuationToken", "abc")])]


@pytest.mark.parametrize(
    ("href", "token"),
    [
        ("/runs?continuationToken=a", "a"),
        ("runs?property=flowId%3D%3Df&continuationToken=a%2Bb%3D", "a+b="),
        ("/data/foundation/flowservice/runs?continuationToken=a&limit=7", "a"),
        ("?continuationToken=a", "a"),
        ("https://platform.adobe.io/data/foundation/flowservice/runs?continuationToken=a", "a"),
        (
            "/connections?continuationToken=abcdefghijkLMNOPqrstupWXKYZ",
            "abcdefghijkLMNOPqrstupWXKYZ",
        ),
        ("/runs?property=flowId==f&limit=7", None),
        ("/runs?continuationToken=", None),
    ],
)
def test_the_continuation_token_is_read_from_every_shape_of_next_link(href, token):
    """Relative, base-prefixed, query-only and absolute links give their token, decoded."""
    assert continuation_token(href) == token


async def test_next_links_on_another_collection_never_take_the_listing_off_runs(
    emulator, api_settings
):
    """The spec's /connections?continuationToken=... links: every request still goes to /runs."""
    expected = seed(emulator, flows=("flow-a",), per_flow=30)
    emulator.faults = Faults(list_script=["connections_link"] * 10)
    records, lister = await listing(api_settings, flow_ids=("flow-a",))
    assert lister.errors == [] and lister.pages == 5
    assert {r.run_id for r in records} == {run_id for run_id, _ in expected["failed"]}
    assert {r.path for r in emulator.stats.requests} == {f"{BASE_PATH}/runs"}
    for request in emulator.stats.requests:
        assert ("property", "flowId==flow-a") in request.query_all
        assert ("limit", "7") in request.query_all


@pytest.mark.parametrize(
    ("script", "words", "requests"),
    [
        pytest.param(["ok", "self_link"], "page 2 repeats a continuation token", 2, id="self"),
        pytest.param(["self_link"], "page 1 carries no continuationToken", 1, id="first-self"),
        pytest.param(["ok", "ok", "first_link"], "page 3 carries no continuation", 3, id="cycle"),
    ],
)
async def test_a_next_link_cycle_stops_the_listing_with_an_error(
    emulator, api_settings, script, words, requests
):
    """A page linking to itself or back to an earlier page ends the listing, with an error."""
    seed(emulator, flows=("flow-a",), per_flow=30)
    emulator.faults = Faults(list_script=script)
    with anyio.fail_after(10):
        records, lister = await listing(api_settings, flow_ids=("flow-a",))
    [error] = lister.errors
    assert error.startswith(f"flow flow-a: the next link on {words}"), error
    assert "the listing would never end" in error
    assert len(emulator.stats.requests) == requests
    assert len(records) == len({r.run_id for r in records}) > 0  # what was read still counts


async def test_pages_are_capped_per_flow(emulator, api_settings):
    """A listing that keeps linking on stops at max_pages with an error, not never."""
    seed(emulator, flows=("flow-a",), per_flow=30)
    _, lister = await listing(api_settings, flow_ids=("flow-a",), max_pages=2)
    [error] = lister.errors
    assert error == (
        "flow flow-a: stopped after 2 pages, the most one flow may take: the API keeps "
        "linking to further pages"
    )
    assert len(emulator.stats.requests) == 2
    with pytest.raises(UsageError, match="max_pages"):
        ListingSettings(flow_ids=("f",), max_pages=0)


def test_cli_failed_exits_1_on_a_pagination_cycle(emulator, thread_server):
    """`bulkretry failed` on a page that links to itself: lines so far, a message, exit 1."""
    seed(emulator, flows=("flow-a",), per_flow=250)
    emulator.faults = Faults(list_script=["ok", "self_link"])
    listed = run_cli(["failed", "--flow-id", "flow-a", "--rate", "0"], env=cli_env(thread_server))
    assert listed.code == 1
    assert "listing stopped: flow flow-a: the next link on page 2 repeats" in listed.stderr
    assert len(listed.lines) == 80  # the failed runs of the 200 newest, from pages 1 and 2
    assert len(emulator.stats.requests) == 2


async def test_stopping_early_leaves_no_task_behind(emulator, api_settings):
    """Breaking out of the listing after one record ends the job cleanly, with nothing hanging."""
    seed(emulator, flows=("flow-a", "flow-b"), per_flow=60)
    emulator.faults = Faults(latency=0.05)  # pages still to come when the caller stops
    settings = ListingSettings(flow_ids=("flow-a", "flow-b"), rate=0, page_size=5)
    read = []
    with anyio.fail_after(10):
        async with bulkretry.list_failed(api_settings, settings) as lister:
            async for record in lister.records():
                read.append(record)
                break
    assert len(read) == 1
    left = [t for t in asyncio.all_tasks() if "Lister" in t.get_coro().__qualname__]
    assert left == []  # no flow task outlives the block
    asked = len(emulator.stats.requests)
    await anyio.sleep(0.2)
    assert len(emulator.stats.requests) == asked  # and nothing asks for another page
    assert asked < 24  # 2 flows x 12 pages: it stopped early, not at the end
