"""``bulkretry failed``: page through a flow's runs and keep the ones worth re-triggering.

Filtering by flow and creation time is left to the API (``property=`` filters); the status
and the ``--since`` bound are checked again here, because a filter the server ignores must
not turn into runs we re-trigger by mistake.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import parse_qsl, urlsplit

import anyio
from anyio.abc import ObjectSendStream

from ._admission import Admission
from ._attempts import Attempts, GaveUp, Policy
from ._backoff import Backoff
from ._errors import UsageError
from ._runs import run_state
from ._settings import DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE, DEFAULT_TIMEOUT, check_pace
from ._text import excerpt

if TYPE_CHECKING:
    from ._flowservice import FlowService

_DURATION: Final = re.compile(r"(\d+)\s*([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One retryable run, as a data line that ``bulkretry retry`` reads back."""

    run_id: str
    flow_id: str
    status: str
    created_at: str | None
    records: int
    error: str | None = None

    def fields(self) -> dict[str, Any]:
        """JSON fields; ``error`` only when the run has one."""
        data = {name: getattr(self, name) for name in self.__slots__}
        if self.error is None:
            del data["error"]
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class ListingSettings:
    """What to list and how hard to push.

    ``error_codes`` keeps only runs whose first error code matches one of these shell-style
    patterns; ``exclude_error_codes`` drops runs whose first error code matches one. Adobe's
    codes are upper case, so patterns match regardless of case.
    """

    flow_ids: tuple[str, ...]
    since: datetime | None = None
    include_empty: bool = False
    error_codes: tuple[str, ...] = ()
    exclude_error_codes: tuple[str, ...] = ()
    rate: float = DEFAULT_RATE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: float = DEFAULT_TIMEOUT
    page_size: int = 100
    max_pages: int = 10_000
    """Per flow: a million runs at 100 a page; more means a server that never ends the list."""

    def __post_init__(self) -> None:
        if not self.flow_ids:
            raise UsageError("name at least one --flow-id")
        check_pace(rate=self.rate, max_attempts=self.max_attempts, timeout=self.timeout)
        if self.page_size < 1:
            raise UsageError("page_size must be at least 1")
        if self.max_pages < 1:
            raise UsageError(f"max_pages must be at least 1, got {self.max_pages}")

    def keeps(self, code: str | None) -> bool:
        """Whether a run whose first error code is ``code`` passes the error-code filters."""
        if self.error_codes and not _matches(code, self.error_codes):
            return False
        return not _matches(code, self.exclude_error_codes)


def _matches(code: str | None, patterns: Sequence[str]) -> bool:
    return code is not None and any(
        fnmatch.fnmatchcase(code.upper(), pattern.upper()) for pattern in patterns
    )


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time, or a duration back from now such as ``90m``, ``24h`` or ``7d``."""
    now = now or datetime.now(UTC)
    if match := _DURATION.fullmatch(text.strip().lower()):
        amount, unit = match.groups()
        try:
            return now - timedelta(**{_UNITS[unit]: int(amount)})
        except OverflowError:  # 99999999999h: before year 1, beyond what a date can hold
            raise UsageError(
                f"--since {text!r} reaches back too far: use a shorter duration"
            ) from None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since: expected an ISO 8601 time (2026-11-22T00:00:00Z) or a duration "
            f"such as 90m, 24h or 7d, got {text!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def retryable(run: dict[str, Any], flow_id: str, *, include_empty: bool) -> RunRecord | None:
    """The record for a failed run (or a successful one that ingested nothing), else None."""
    state = run_state(run)
    if state.run_id is None:
        return None
    status, records = state.status, state.records
    if status != "failed" and not (include_empty and status == "success" and records == 0):
        return None
    return RunRecord(
        run_id=state.run_id,
        flow_id=state.flow_id or flow_id,
        status=status,
        created_at=state.created_at,
        records=records,
        error=state.error,
    )


class Lister:
    """Pages through every flow concurrently, under one rate limit and one retry policy.

    An async context manager: entering starts one task per flow (the task group belongs to
    the ``async with`` block, never to a generator), leaving stops whatever is left.
    """

    def __init__(
        self, client: FlowService, settings: ListingSettings, backoff: Backoff | None = None
    ) -> None:
        self._client = client
        self._settings = settings
        self._policy = Policy(
            limit=settings.max_attempts,
            refreshable=client.tokens.refreshable,
            backoff=backoff or Backoff(),
        )
        self._admission = Admission(settings.rate)
        self._tasks = anyio.create_task_group()
        self._send, self._receive = anyio.create_memory_object_stream[RunRecord](256)
        self.pages = 0
        self.errors: list[str] = []

    async def __aenter__(self) -> Self:
        await self._tasks.__aenter__()
        async with self._send:
            for flow_id in dict.fromkeys(self._settings.flow_ids):
                self._tasks.start_soon(self._flow, flow_id, self._send.clone())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self._receive.close()
        self._tasks.cancel_scope.cancel()  # listing is read-only: stopping early is harmless
        return await self._tasks.__aexit__(exc_type, exc, traceback)

    async def records(self) -> AsyncIterator[RunRecord]:
        """Every retryable run of every flow, each once; errors are collected in ``errors``."""
        seen: set[str] = set()
        async for record in self._receive:
            if record.run_id not in seen:
                seen.add(record.run_id)
                yield record

    async def _flow(self, flow_id: str, out: ObjectSendStream[RunRecord]) -> None:
        settings = self._settings
        since_ms = int(settings.since.timestamp() * 1000) if settings.since else None
        filters = [("property", f"flowId=={flow_id}")]
        if since_ms is not None:
            filters.append(("property", f"createdAt>={since_ms}"))
        filters.append(("limit", str(settings.page_size)))
        token: str | None = None
        seen: set[str | None] = {None}  # None is the first page, asked without a token
        async with out:
            for number in range(1, settings.max_pages + 1):
                params = filters if token is None else [*filters, ("continuationToken", token)]
                try:
                    page = await self._page("/runs", params)
                except GaveUp as end:
                    self.errors.append(f"flow {flow_id}: {_describe(end)}")
                    return
                for run in _items(page):
                    if run.get("flowId", flow_id) != flow_id or not _not_before(run, since_ms):
                        continue  # a filter the server did not apply
                    record = retryable(run, flow_id, include_empty=settings.include_empty)
                    if record is not None and settings.keeps(run_state(run).error_code):
                        await out.send(record)
                href = _next_href(page)
                if href is None:
                    return
                # Only the token is taken from the link: whatever its path or host, the next
                # page is asked of our runs collection, with our filters.
                token = continuation_token(href)
                if token in seen:
                    self.errors.append(f"flow {flow_id}: {_cycle(number, href, token)}")
                    return
                seen.add(token)
            self.errors.append(
                f"flow {flow_id}: stopped after {settings.max_pages} pages, the most one flow "
                "may take: the API keeps linking to further pages"
            )

    async def _page(self, path: str, params: Sequence[tuple[str, str]]) -> Any:  # noqa: ANN401 - JSON
        page = await Attempts(self._policy, gate=self._admission).run(
            lambda: self._client.get_json(path, params)
        )
        self.pages += 1
        return page


def _describe(end: GaveUp) -> str:
    text = str(end)
    status = end.failure.status if end.failure else None
    if status is not None and status >= 300 and not text.startswith("HTTP "):
        text = f"HTTP {status} {text}"
    return text


def _items(page: Any) -> list[dict[str, Any]]:  # noqa: ANN401 - JSON
    items = page.get("items") if isinstance(page, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _next_href(page: Any) -> str | None:  # noqa: ANN401 - JSON
    links = page.get("_links") if isinstance(page, dict) else None
    nxt = links.get("next") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    return href if isinstance(href, str) and href else None


def continuation_token(href: str) -> str | None:
    """The ``continuationToken`` a next link carries, or None: a link back to the first page."""
    for name, value in parse_qsl(urlsplit(href).query, keep_blank_values=True):
        if name == "continuationToken" and value:
            return value
    return None


def _cycle(number: int, href: str, token: str | None) -> str:
    shown = excerpt(href, limit=80)
    if token is None:
        return (
            f"the next link on page {number} carries no continuationToken ({shown}): it leads "
            "back to the first page, so the listing would never end"
        )
    return (
        f"the next link on page {number} repeats a continuation token seen before ({shown}): "
        "the pages form a cycle, so the listing would never end"
    )


def _not_before(run: dict[str, Any], since_ms: int | None) -> bool:
    created = run.get("createdAt")
    return since_ms is None or (isinstance(created, int | float) and created >= since_ms)
