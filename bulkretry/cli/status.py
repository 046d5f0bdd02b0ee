"""``bulkretry status``: what became of the runs bulkretry re-triggered, from the history."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any, BinaryIO, Final

import orjson

from bulkretry import _api as api
from bulkretry._api_settings import ApiSettings
from bulkretry._discovery import parse_since
from bulkretry._errors import UsageError
from bulkretry._history import History
from bulkretry._history_location import HistoryLocation, history_location
from bulkretry._lineage import Chain, Count, tally
from bulkretry._settings import DEFAULT_CONCURRENCY, DEFAULT_MAX_GENERATIONS, JobSettings

from .commands import _api_settings, _history_key, _run
from .console import EXIT_OK, say, setup_diagnostics
from .flags import _api_flags, _history_flag, _operator_flags, _pace_flags, _positive_int
from .output import Output

CHAIN_FIELDS = (
    "run_id",
    "flow_id",
    "generation",
    "latest_run_id",
    "latest_status",
    "retriggered_at",
    "error",
)
COUNT_FIELDS = (
    "flow_id",
    "error_code",
    "retriggered",
    "recovered",
    "failed_again",
    "pending",
    "exhausted",
)


_EPILOG: Final = """\
examples:
  bulkretry status --summary --format table          # the morning check
  bulkretry status --since 24h --refresh | jq 'select(.latest_status == "failed")'

exit status: 0 the history was read, 2 usage error (no org, unusable history)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``bulkretry status`` and its flags (the shared ones come from ``flags``)."""
    status = subparsers.add_parser(
        "status",
        help="what became of the runs bulkretry re-triggered, from the history",
        description="One JSON object per original run bulkretry re-triggered (run_id, flow_id, "
        "generation, latest_run_id, latest_status, retriggered_at, error), read from the "
        "history; with --summary, counts per flow and error code.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "--since", metavar="TIME", help="only chains re-triggered at or after TIME (24h, ISO)"
    )
    status.add_argument(
        "--flow-id",
        action="append",
        default=[],
        metavar="ID",
        dest="flow_ids",
        help="only chains of this dataflow; repeat for several",
    )
    status.add_argument(
        "--refresh",
        action="store_true",
        help="first ask the API about runs still pending (needs credentials; paced by --rate)",
    )
    status.add_argument(
        "--summary",
        action="store_true",
        help="counts per flow and error code: retriggered, recovered, failed_again, pending, "
        "exhausted",
    )
    status.add_argument(
        "--format",
        choices=("json", "table"),
        default="json",
        help="JSON lines (default) or a table for a person",
    )
    _history_flag(status)
    status.add_argument(
        "--max-generations",
        type=_positive_int,
        default=DEFAULT_MAX_GENERATIONS,
        metavar="N",
        help="a chain that failed at generation N counts as exhausted (default: %(default)s)",
    )
    job = status.add_argument_group("refresh")
    job.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"at most N polls in flight (default: {DEFAULT_CONCURRENCY})",
    )
    _api_flags(status)
    _pace_flags(status)
    _operator_flags(status, progress=False)
    status.set_defaults(handler=status_command)


def status_command(args: argparse.Namespace) -> int:
    """``bulkretry status``: one line per original run, or counts per flow and error code."""
    setup_diagnostics(args.log_level)
    location = history_location(args.history, os.environ)
    if location is None:
        raise UsageError("status reads the history: --history off leaves nothing to show")
    since = parse_since(args.since) if args.since else None
    job = JobSettings(
        rate=args.rate,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
    )
    api_settings = _api_settings(args) if args.refresh else None
    key = _history_key(args, api_settings)
    output = Output(None)
    out = output.file
    try:
        rows = _run(
            _status_job(
                location,
                key,
                since=since,
                flow_ids=args.flow_ids,
                api_settings=api_settings,
                job=job,
            )
        )
        if args.summary:
            counts = tally(rows, max_generations=args.max_generations)
            _write(out, [_fields(count, COUNT_FIELDS) for count in counts], args.format)
        else:
            _write(out, [_fields(chain, CHAIN_FIELDS) for chain in rows], args.format)
    finally:
        output.close()
    if not args.quiet and args.summary:
        say(f"{len(rows)} original run{'s'[: len(rows) != 1]} in the history at {location}")
    return EXIT_OK


async def _status_job(  # noqa: PLR0913 - what to read, and how to refresh it first
    location: HistoryLocation,
    key: tuple[str, str],
    *,
    since: datetime | None,
    flow_ids: Sequence[str],
    api_settings: ApiSettings | None,
    job: JobSettings,
) -> list[Chain]:
    org, sandbox = key
    refreshing = api_settings is not None  # only a refresh writes: reading creates nothing
    opened = await History.open(location, org=org, sandbox=sandbox, write=refreshing)
    async with opened as history:
        if api_settings is not None:
            ended = await api.refresh(api_settings, history, job)
            say(f"refreshed: {ended} run{'s'[: ended != 1]} found ended since last seen")
        return await history.chains(since=since, flow_ids=tuple(flow_ids))


def _fields(record: Chain | Count, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


def _write(out: BinaryIO, records: list[dict[str, Any]], form: str) -> None:
    """JSON lines (data records, no summary line), or an aligned table for a person."""
    if form == "json":
        out.write(b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
        return
    if not records:
        out.write(b"(nothing in the history matches)\n")
        return
    names = list(records[0])
    cells = [names, *[["-" if r[n] is None else str(r[n]) for n in names] for r in records]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    out.write("".join(line.rstrip() + "\n" for line in lines).encode())
