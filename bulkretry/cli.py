"""The command line: argparse, wiring, exit codes. The only module that prints or exits."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Coroutine, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Final, NoReturn

import anyio
import orjson

from . import __version__, api
from .config import ApiSettings, JobSettings, load_api_settings
from .discovery import ListingSettings, parse_since
from .errors import BulkRetryError, UsageError
from .report import Report
from .sources import InputFiles

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_USAGE: Final = 2
EXIT_STOPPED: Final = 130

_EPILOG_RETRY: Final = """\
examples:
  bulkretry retry failed-runs.txt > results.jsonl
  cat failed-runs.txt | bulkretry retry --rate 5 --journal nightly.journal
  bulkretry failed --flow-id "$FLOW" --since 24h | bulkretry retry --journal nightly.journal

exit status: 0 all re-triggered (or skipped as duplicate/already-retriggered),
1 some failed/uncertain/invalid, 2 usage or credentials error (nothing sent),
130 stopped by SIGINT/SIGTERM (summary still written)."""


_EPILOG_FAILED: Final = """\
examples:
  bulkretry failed --flow-id "$FLOW_A" --flow-id "$FLOW_B" --since 24h > failed.jsonl
  bulkretry failed --flow-id "$FLOW" --since 24h | bulkretry retry --journal nightly.journal

exit status: 0 listing complete (even if empty), 1 an API error stopped it (lines written
are correct), 2 usage or credentials error."""


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``bulkretry`` command."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command, and return its exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except BulkRetryError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except BaseExceptionGroup as group:  # raised through a task group
        ours, rest = group.split(BulkRetryError)
        if ours is None or rest is not None:
            raise
        _error(str(_first_leaf(ours)))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_STOPPED


def _first_leaf(group: BaseExceptionGroup[BulkRetryError]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _error(message: str) -> None:
    print(f"bulkretry: error: {message}", file=sys.stderr)  # noqa: T201


def _warn(message: str) -> None:
    print(f"bulkretry: warning: {message}", file=sys.stderr)  # noqa: T201


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulkretry",
        description="Re-trigger failed Adobe Experience Platform dataflow runs in bulk.",
        epilog="Run 'bulkretry demo' to see it work against a built-in emulator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    retry = commands.add_parser(
        "retry",
        help="re-trigger the run IDs read from files or stdin",
        description="Re-trigger failed dataflow runs; one JSON line per run ID, then a summary.",
        epilog=_EPILOG_RETRY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    retry.add_argument("paths", nargs="*", metavar="PATH", help="files of run IDs; '-' or none: stdin")
    _add_api_flags(retry)
    _add_pace_flags(retry)
    retry.add_argument("--concurrency", type=_positive_int, default=10, metavar="N",
                       help="at most N requests in flight (default: 10)")
    retry.add_argument("--journal", type=Path, metavar="PATH",
                       help="durable record of the job; rerun with it to resume")
    retry.add_argument("--retry-uncertain", action="store_true",
                       help="also retry when a request may already have been applied")
    retry.add_argument("--dry-run", action="store_true",
                       help="validate and deduplicate, send nothing, emit 'planned' lines")
    retry.add_argument("--output", type=Path, metavar="PATH",
                       help="write the JSON lines here instead of stdout (truncated first)")
    retry.set_defaults(handler=_retry)

    failed = commands.add_parser(
        "failed",
        help="list the runs of some flows that can be re-triggered, as JSON lines",
        description="List failed runs (and with --include-empty, successful runs that ingested "
        "nothing) of the given dataflows, one JSON object per line, ready for 'bulkretry retry'.",
        epilog=_EPILOG_FAILED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    failed.add_argument("--flow-id", action="append", required=True, metavar="ID", dest="flow_ids",
                        help="a dataflow ID; repeat for several flows")
    failed.add_argument("--since", metavar="TIME",
                        help="only runs created at or after TIME: ISO 8601 or a duration (90m, 24h, 7d)")
    failed.add_argument("--include-empty", action="store_true",
                        help="also list successful runs that ingested zero records")
    _add_api_flags(failed)
    _add_pace_flags(failed)
    failed.set_defaults(handler=_failed)

    demo = commands.add_parser(
        "demo", help="retry the sample run IDs against the built-in emulator (no account needed)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def _add_api_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Flow Service (flag > environment > default)")
    group.add_argument("--base-url", metavar="URL", help="Flow Service root (AEP_FLOW_SERVICE_URL)")
    group.add_argument("--ims-url", metavar="URL", help="IMS token endpoint (AEP_IMS_TOKEN_URL)")
    group.add_argument("--org", metavar="ORG_ID", help="IMS org ID, x-gw-ims-org-id (AEP_ORG_ID)")
    group.add_argument("--sandbox", metavar="NAME", help="sandbox name (AEP_SANDBOX_NAME, default prod)")


def _add_pace_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=_rate, default=10.0, metavar="R",
                        help="at most R requests started per second; 0 = no limit (default: 10)")
    parser.add_argument("--max-attempts", type=_positive_int, default=5, metavar="N",
                        help="attempts per run ID, the first included (default: 5)")
    parser.add_argument("--timeout", type=_positive_float, default=30.0, metavar="S",
                        help="seconds for one request (default: 30)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, got {text}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in {float("inf"), float("-inf")}:  # noqa: PLR0124 - NaN check
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _job_settings(args: argparse.Namespace) -> JobSettings:
    return JobSettings(
        rate=args.rate,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        journal=args.journal,
        retry_uncertain=args.retry_uncertain,
        dry_run=args.dry_run,
    )


def _api_settings(args: argparse.Namespace) -> ApiSettings:
    settings = load_api_settings(
        os.environ, base_url=args.base_url, ims_url=args.ims_url, org=args.org, sandbox=args.sandbox
    )
    for warning in settings.warnings:
        _warn(warning)
    return settings


def _retry(args: argparse.Namespace) -> int:
    settings = _job_settings(args)
    api_settings = None if settings.dry_run else _api_settings(args)
    with ExitStack() as stack:
        inputs = stack.enter_context(InputFiles(args.paths))
        out = stack.enter_context(_open_output(args.output))
        return _run_async(_retry_job(inputs, api_settings, settings, out))


def _open_output(path: Path | None) -> IO[bytes]:
    if path is None:
        return open(os.dup(sys.stdout.fileno()), "wb")  # noqa: SIM115 - closed by the caller
    try:
        return path.open("wb")
    except OSError as exc:
        raise UsageError(f"cannot write --output {path}: {exc.strerror}") from None


def _run_async(job: Coroutine[Any, Any, int]) -> int:
    async def main() -> int:
        return await job

    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": _has_uvloop()})


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401, PLC0415 - optional speed-up
    except ImportError:
        return False
    return True


async def _retry_job(
    inputs: InputFiles, api_settings: ApiSettings | None, settings: JobSettings, out: IO[bytes]
) -> int:
    started = time.monotonic()
    async with api.retrigger(inputs.items(), api_settings, settings) as job:
        report = Report(out, job.secrets)
        async with anyio.create_task_group() as signals:
            signals.start_soon(_stop_on_signal, job)
            async for outcome in job:
                report.outcome(outcome)
            signals.cancel_scope.cancel()
        report.summary(time.monotonic() - started)
    if job.stopped:
        return EXIT_STOPPED
    return EXIT_OK if report.tally.clean else EXIT_PROBLEMS


async def _stop_on_signal(job: api.RetriggerJob) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if job.stopped:
                os._exit(EXIT_STOPPED)  # second signal: the journal is consistent line by line
            name = signal.Signals(signum).name
            _warn(f"{name}: finishing requests in flight, sending nothing new "
                  "(signal again to exit at once)")
            job.stop()


def _failed(args: argparse.Namespace) -> int:
    settings = ListingSettings(
        flow_ids=tuple(args.flow_ids),
        since=parse_since(args.since) if args.since else None,
        include_empty=args.include_empty,
        rate=args.rate,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
    )
    api_settings = _api_settings(args)
    with _open_output(None) as out:
        return _run_async(_failed_job(api_settings, settings, out))


async def _failed_job(api_settings: ApiSettings, settings: ListingSettings, out: IO[bytes]) -> int:
    count = 0
    async with api.list_failed(api_settings, settings) as lister:
        async for record in lister.records():
            out.write(orjson.dumps(record.fields(), option=orjson.OPT_APPEND_NEWLINE))
            out.flush()
            count += 1
    for error in lister.errors:
        _error(f"listing stopped: {error}")
    flows = len(settings.flow_ids)
    print(  # noqa: T201
        f"bulkretry: {count} retryable run{'s'[:count != 1]} in {flows} flow{'s'[:flows != 1]} "
        f"({lister.pages} page{'s'[:lister.pages != 1]})",
        file=sys.stderr,
    )
    return EXIT_PROBLEMS if lister.errors else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    del args
    from .demo import run_demo  # noqa: PLC0415 - only the demo needs the emulator

    return _run_async(run_demo(sys.stdout.buffer))
