"""The commands and their own flags, with help that shows real examples.

The flags several commands share are declared in ``flags``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from bulkretry import __version__
from bulkretry._follow import DEFAULT_WAIT_TIMEOUT, Cadence
from bulkretry._settings import CONCURRENCY, DEFAULT_CONCURRENCY

from .commands import demo as run_demo
from .failed import failed as run_failed
from .flags import (
    _api_flags,
    _history_flag,
    _number_flag,
    _operator_flags,
    _pace_flags,
    _positive_float,
    _positive_int,
)
from .retry import retry as run_retry
from .status import add_parser as add_status_parser

_RETRY_EPILOG: Final = """\
examples:
  bulkretry retry failed-runs.txt > results.jsonl
  cat failed-runs.txt | bulkretry retry --rate 5 --journal nightly.journal
  bulkretry failed --flow-id "$FLOW" --since 24h | bulkretry retry --journal nightly.journal
  bulkretry retry --dry-run failed-runs.txt          # validate and count, send nothing
  bulkretry failed --flow-id "$FLOW" --error-code 'CONNECTOR-*' | bulkretry retry --wait

exit status: 0 all re-triggered (or skipped as duplicate/already-retriggered) and, with
--wait, every new run finished success; 1 some failed/uncertain/invalid, or with --wait
some new run failed again or did not finish; 2 usage or credentials error (nothing sent),
130 stopped by SIGINT/SIGTERM (summary still written; rerun with --journal to resume)."""

_FAILED_EPILOG: Final = """\
examples:
  bulkretry failed --flow-id "$FLOW_A" --flow-id "$FLOW_B" --since 24h > failed.jsonl
  bulkretry failed --flow-id "$FLOW" --since 24h | bulkretry retry --journal nightly.journal
  bulkretry failed --flow-id "$FLOW" --error-code 'CONNECTOR-*' | bulkretry retry --wait

exit status: 0 listing complete (even if empty), 1 an API error stopped it (lines written
are correct), 2 usage or credentials error."""

_CREDENTIALS: Final = """\
credentials come from the environment: AEP_CLIENT_ID + AEP_CLIENT_SECRET (or
AEP_CLIENT_SECRET_FILE) for OAuth Server-to-Server, or AEP_ACCESS_TOKEN; AEP_ORG_ID is
required. See README, section Credentials."""


def build_parser() -> argparse.ArgumentParser:
    """The ``bulkretry`` parser with its commands."""
    parser = argparse.ArgumentParser(
        prog="bulkretry",
        description="Re-trigger failed Adobe Experience Platform dataflow runs in bulk.",
        epilog="Run 'bulkretry demo' to see it work against a built-in emulator. " + _CREDENTIALS,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _retry_parser(subparsers)
    _failed_parser(subparsers)
    add_status_parser(subparsers)
    demo = subparsers.add_parser(
        "demo",
        help="retry the sample run IDs against the built-in emulator (no account needed)",
        description="Start the embedded Flow Service emulator on a loopback port, retry "
        "samples/run-ids.txt through the real pipeline, print the JSON lines.",
    )
    demo.set_defaults(handler=run_demo)
    return parser


def _retry_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retry = subparsers.add_parser(
        "retry",
        help="re-trigger the run IDs read from files or stdin",
        description="Re-trigger failed dataflow runs: one JSON line per run ID on stdout, "
        "then a summary line. " + _CREDENTIALS,
        epilog=_RETRY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    retry.add_argument(
        "paths", nargs="*", metavar="PATH", help="files of run IDs; '-' or none: stdin"
    )
    _api_flags(retry)
    _pace_flags(retry)
    job = retry.add_argument_group("job")
    _number_flag(job, CONCURRENCY, DEFAULT_CONCURRENCY, "N", "at most N requests in flight")
    job.add_argument(
        "--journal",
        type=Path,
        metavar="PATH",
        help="durable record of the job; rerun with the same PATH to resume",
    )
    _history_flag(job)
    job.add_argument(
        "--again",
        action="store_true",
        help="re-trigger even run IDs the history says were re-triggered before",
    )
    job.add_argument(
        "--max-generations",
        type=_positive_int,
        default=3,
        metavar="N",
        help="a chain of re-triggers from one original stops after N (default: 3)",
    )
    job.add_argument(
        "--retry-uncertain",
        action="store_true",
        help="also retry when a request may already have been applied",
    )
    job.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and deduplicate, send nothing, emit 'planned' lines",
    )
    job.add_argument(
        "--wait",
        action="store_true",
        help="follow each re-triggered run to its end: one 'finished' line per run, "
        "exit 0 only when all recovered",
    )
    job.add_argument(
        "--wait-timeout",
        type=_positive_float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="S",
        help="with --wait, give up on a run S seconds after its re-trigger "
        "(default: %(default).0f, 6 hours)",
    )
    job.add_argument(
        "--poll-interval",
        type=_positive_float,
        default=Cadence().first,
        metavar="S",
        help="with --wait, first look at a new run after S seconds; later looks grow apart, "
        "up to 60 x S (default: %(default).0f)",
    )
    job.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="write the JSON lines here instead of stdout (truncated first)",
    )
    _operator_flags(retry, progress=True)
    retry.set_defaults(handler=run_retry, resumable=True)


def _failed_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    failed = subparsers.add_parser(
        "failed",
        help="list the runs of some dataflows that can be re-triggered, as JSON lines",
        description="List failed runs (with --include-empty also successful runs that ingested "
        "nothing) of the given dataflows, one JSON object per line, ready for 'bulkretry retry'.",
        epilog=_FAILED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    failed.add_argument(
        "--flow-id",
        action="append",
        required=True,
        metavar="ID",
        dest="flow_ids",
        help="a dataflow ID; repeat for several flows",
    )
    failed.add_argument(
        "--since",
        metavar="TIME",
        help="only runs created at or after TIME: ISO 8601 or 90m, 24h, 7d",
    )
    failed.add_argument(
        "--include-empty",
        action="store_true",
        help="also list successful runs that ingested zero records",
    )
    failed.add_argument(
        "--error-code",
        action="append",
        default=[],
        metavar="PATTERN",
        dest="error_codes",
        help="keep runs whose first error code matches PATTERN (shell-style *, any case); "
        "repeat for several",
    )
    failed.add_argument(
        "--exclude-error-code",
        action="append",
        default=[],
        metavar="PATTERN",
        dest="exclude_error_codes",
        help="drop runs whose first error code matches PATTERN; repeat for several",
    )
    _history_flag(failed)
    failed.add_argument(
        "--include-retriggered",
        action="store_true",
        help="also list runs the history says were re-triggered before",
    )
    _api_flags(failed)
    _pace_flags(failed)
    _operator_flags(failed, progress=False)
    failed.set_defaults(handler=run_failed)
