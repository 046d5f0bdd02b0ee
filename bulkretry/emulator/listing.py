"""``GET /runs``: property filters, ordering and continuation-token paging.

Paging is keyset-based: the token encodes the sort key of the last item served, so runs
created between pages (re-triggers sort first) neither repeat nor hide items.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterable

    from multidict import MultiMapping

    from bulkretry.emulator.model import Run

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 100
_CLAUSE = re.compile(r"^([A-Za-z.]+)(==|!=|>=|<=|>|<)(.*)$")
_TEXT_FIELDS: Final[dict[str, Callable[[Run], str]]] = {
    "id": lambda run: run.id,
    "flowId": lambda run: run.flow_id,
    "metrics.statusSummary.status": lambda run: run.status.lower(),
}
_NUMBER_FIELDS: Final[dict[str, Callable[[Run], int]]] = {
    "createdAt": lambda run: run.created_ms,
    # The sort-and-filter guide's own example bounds runs by start time.
    "metrics.durationSummary.startedAtUTC": lambda run: run.created_ms,
    "metrics.recordSummary.outputRecordCount": lambda run: run.output_records or 0,
}
_COMPARE: Final[dict[str, Callable[[int, int], bool]]] = {
    "==": int.__eq__,
    "!=": int.__ne__,
    ">=": int.__ge__,
    "<=": int.__le__,
    ">": int.__gt__,
    "<": int.__lt__,
}


class BadQueryError(ValueError):
    """A query the real API would refuse with 400."""


Key = tuple[int, str]
Predicate = Callable[["Run"], bool]


def _clause(text: str) -> Predicate:
    match = _CLAUSE.match(text.strip())
    if match is None:
        raise BadQueryError(f"Invalid property filter '{text}'")
    name, op, value = match.groups()
    if name in _TEXT_FIELDS:
        if op not in {"==", "!="}:
            raise BadQueryError(f"Operator {op} is not supported for property {name}")
        text_of = _TEXT_FIELDS[name]
        wanted = value.lower() if name.endswith("status") else value
        return lambda run: (text_of(run) == wanted) == (op == "==")
    if name in _NUMBER_FIELDS:
        try:
            number = int(value)
        except ValueError:
            raise BadQueryError(f"Property {name} needs an integer, got '{value}'") from None
        number_of, compare = _NUMBER_FIELDS[name], _COMPARE[op]
        return lambda run: compare(number_of(run), number)
    raise BadQueryError(f"Unsupported property '{name}'")


def parse_properties(values: Iterable[str]) -> Predicate:
    """Each ``property`` value is ANDed with the others; commas inside one value mean OR."""
    groups = [[_clause(part) for part in value.split(",")] for value in values]
    return lambda run: all(any(clause(run) for clause in group) for group in groups)


def _encode_token(key: Key) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def _decode_token(token: str) -> Key:
    try:
        created, run_id = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(created), str(run_id)
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError):
        raise BadQueryError("Invalid continuationToken") from None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of runs and the link to the next one, if any."""

    items: list[Run]
    next_href: str | None


def count(runs: Iterable[Run], query: MultiMapping[str]) -> int:
    """``count=true``: how many runs match the filters; the API then lists no items."""
    keep = parse_properties(query.getall("property", []))
    return sum(1 for run in runs if keep(run))


def page(runs: Iterable[Run], query: MultiMapping[str]) -> Page:
    """Filter, order and cut one page; the next href is relative to the service root."""
    raw_limit = query.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or int(raw_limit) < 1:
        raise BadQueryError(f"Invalid limit '{raw_limit}'; use 1 to {MAX_LIMIT}")
    limit = min(int(raw_limit), MAX_LIMIT)
    orderby = query.get("orderby", "-createdAt")
    if orderby not in {"createdAt", "-createdAt", "+createdAt"}:
        raise BadQueryError(f"Unsupported orderby '{orderby}'")
    descending = orderby.startswith("-")
    properties = query.getall("property", [])
    keep = parse_properties(properties)

    def key(run: Run) -> Key:
        return (run.created_ms, run.id)

    token = query.get("continuationToken")
    after = _decode_token(token) if token else None
    chosen = [
        run
        for run in runs
        if keep(run) and (after is None or (key(run) < after if descending else key(run) > after))
    ]
    chosen.sort(key=key, reverse=descending)
    items = chosen[:limit]
    if len(chosen) <= limit:
        return Page(items, None)
    params = [("continuationToken", _encode_token(key(items[-1])))]
    params += [("property", value) for value in properties]
    params.append(("limit", str(limit)))
    if "orderby" in query:
        params.append(("orderby", orderby))
    return Page(items, "/runs?" + urlencode(params))
