"""``bulkretry failed``: list the retryable runs of some dataflows, as JSON lines."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import AsyncExitStack
from typing import BinaryIO

import anyio
import anyio.to_thread
import orjson

from bulkretry import _api as api
from bulkretry._api_settings import ApiSettings
from bulkretry._discovery import ListingSettings, parse_since
from bulkretry._history import History
from bulkretry._history_location import HistoryLocation, history_location
from bulkretry._report import write_lines

from .commands import _api_settings, _run
from .console import EXIT_OK, EXIT_PROBLEMS, EXIT_STOPPED, say, setup_diagnostics
from .output import Output
from .signals import _StopOnSignal


def failed(args: argparse.Namespace) -> int:
    """``bulkretry failed``: list the retryable runs of some dataflows."""
    setup_diagnostics(args.log_level)
    settings = ListingSettings(
        flow_ids=tuple(args.flow_ids),
        since=parse_since(args.since) if args.since else None,
        include_empty=args.include_empty,
        error_codes=tuple(args.error_codes),
        exclude_error_codes=tuple(args.exclude_error_codes),
        rate=args.rate,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
    )
    api_settings = _api_settings(args)
    history = history_location(args.history, os.environ)
    output = Output(None)
    try:
        job = _failed_job(api_settings, settings, output.file, history, args.include_retriggered)
        code, message = _run(job)
    finally:
        output.close()
    if not args.quiet:
        say(message)
    if code == EXIT_STOPPED:  # a line may still wait on a stopped reader: never join it
        sys.stderr.flush()
        os._exit(code)
    return code


async def _failed_job(
    api_settings: ApiSettings,
    settings: ListingSettings,
    out: BinaryIO,
    location: HistoryLocation | None,
    include_retriggered: bool,  # noqa: FBT001 - a flag passed straight through
) -> tuple[int, str]:
    """List to ``out``; SIGINT/SIGTERM cancel the listing (read-only: stopping is harmless).

    The signals are received by the event loop, not raised wherever Python happens to be:
    a KeyboardInterrupt inside aiohttp's transports spilled dozens of "Fatal error on
    transport" lines onto stderr. With a history, runs it records as re-triggered are left
    out (unless ``include_retriggered``) and runs bulkretry created show their lineage.
    """
    count = hidden = pages = 0
    errors: list[str] = []
    stop = _StopOnSignal()
    async with anyio.create_task_group() as tasks, AsyncExitStack() as stack:
        await tasks.start(stop.listen, tasks.cancel_scope)
        history = None
        if location is not None:  # read only: listing never writes the history
            key = {"org": api_settings.org_id, "sandbox": api_settings.sandbox}
            history = await History.open(location, write=False, **key)
            stack.push_async_callback(history.aclose)
        async with api.list_failed(api_settings, settings) as lister:
            async for record in lister.records():
                fields = record.fields()
                if history is not None:
                    lineage = (await history.lineage([record.run_id])).get(record.run_id)
                    if lineage is not None and lineage.retriggered and not include_retriggered:
                        hidden += 1
                        continue
                    if lineage is not None and lineage.original_run_id is not None:
                        fields |= {
                            "generation": lineage.generation,
                            "original_run_id": lineage.original_run_id,
                        }
                line = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
                # From a thread, which a signal may leave behind: a stopped reader of stdout
                # never holds the event loop, so the listing stops even then. A line is one
                # write under PIPE_BUF: it reaches a pipe whole or not at all.
                await anyio.to_thread.run_sync(write_lines, out, line, abandon_on_cancel=True)
                count += 1
        pages, errors = lister.pages, lister.errors
        tasks.cancel_scope.cancel()
    for problem in errors:
        say(f"error: listing stopped: {problem}")
    flows = len(settings.flow_ids)
    message = (
        f"{count} retryable run{'s'[: count != 1]} in {flows} flow{'s'[: flows != 1]} "
        f"({pages} page{'s'[: pages != 1]})"
        + (f"; {hidden} re-triggered before left out (--include-retriggered)" if hidden else "")
    )
    if stop.received:
        return EXIT_STOPPED, f"{stop.received}: stopped; {message} written"
    return (EXIT_PROBLEMS if errors else EXIT_OK), message
