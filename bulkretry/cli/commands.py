"""What each command does, on top of the library API."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from collections.abc import Coroutine
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import anyio
import anyio.to_thread
import orjson
from anyio.abc import TaskStatus

from bulkretry import _api as api
from bulkretry._discovery import ListingSettings, parse_since
from bulkretry._errors import UsageError
from bulkretry._follow import Cadence, FollowSettings
from bulkretry._history import History
from bulkretry._outcomes import Finished, Line, Summary
from bulkretry._report import Report, write_lines
from bulkretry._settings import (
    DEFAULT_SANDBOX,
    ApiSettings,
    HistoryLocation,
    JobSettings,
    check_url,
    history_location,
    load_api_settings,
)
from bulkretry._sources import InputFiles

from .console import EXIT_OK, EXIT_PROBLEMS, EXIT_STOPPED, say, setup_diagnostics
from .output import STDIN, Output, check_output

if TYPE_CHECKING:
    from bulkretry.cli.progress import Progress

T = TypeVar("T")

FLUSH_INTERVAL = 0.1


def retry(args: argparse.Namespace) -> int:
    """``bulkretry retry``: re-trigger run IDs from files or stdin."""
    setup_diagnostics(args.log_level)
    settings = JobSettings(
        rate=args.rate,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        journal=args.journal,
        retry_uncertain=args.retry_uncertain,
        dry_run=args.dry_run,
        history=history_location(args.history, os.environ),
        again=args.again,
        max_generations=args.max_generations,
    )
    if settings.dry_run:  # needs no credentials, but a flag given wrong is still wrong
        for flag, url in (("--base-url", args.base_url), ("--ims-url", args.ims_url)):
            if url is not None:
                check_url(url, flag)
    api_settings = None if settings.dry_run else _api_settings(args)
    key = _history_key(args, api_settings) if settings.history is not None else None
    show_progress = not args.quiet and (
        args.progress if args.progress is not None else sys.stderr.isatty()
    )
    check_output(args.output, _kept_files(args))
    with ExitStack() as stack:
        inputs = stack.enter_context(InputFiles(args.paths))
        output = Output(args.output)
        stack.callback(output.close)
        progress = None
        if show_progress:
            from bulkretry.cli.progress import Progress  # noqa: PLC0415 - terminals only

            progress = Progress(sys.stderr, args.paths)
            stack.callback(progress.close)
        follow = _follow_settings(args)
        job = _retry_job(
            inputs, api_settings, settings, output, progress, follow=follow, history_key=key
        )
        code, summary = _run(job)
    if not args.quiet:
        say(_closing_line(summary, args, code))
    return code


def _history_key(args: argparse.Namespace, api: ApiSettings | None) -> tuple[str, str]:
    """The (org, sandbox) the history is kept under; a dry run reads them without credentials."""
    if api is not None:
        return api.org_id, api.sandbox
    org = (args.org or os.environ.get("AEP_ORG_ID") or "").strip()
    if not org:
        raise UsageError(
            "the history is kept per org: set AEP_ORG_ID or pass --org (or --history off)"
        )
    sandbox = (args.sandbox or os.environ.get("AEP_SANDBOX_NAME") or "").strip()
    return org, sandbox or DEFAULT_SANDBOX


def _kept_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Every file the job reads or keeps, which ``--output`` must never be."""
    kept = [("--journal", args.journal)] if args.journal is not None else []
    history = history_location(args.history, os.environ)
    if history is not None and history.path is not None:
        kept.append(("--history", history.path))
    return kept + [("input", STDIN if p == "-" else Path(p)) for p in args.paths or ["-"]]


async def _retry_job(  # noqa: PLR0913 - the job's parts, each built by retry()
    inputs: InputFiles,
    api_settings: ApiSettings | None,
    settings: JobSettings,
    output: Output,
    progress: Progress | None,
    *,
    follow: FollowSettings | None,
    history_key: tuple[str, str] | None,
) -> tuple[int, Summary]:
    started = time.monotonic()
    report = Report(output.file, followed=follow is not None)

    async def on_outcome(outcome: Line) -> None:
        report.outcome(outcome)
        if progress is not None and not isinstance(outcome, Finished):
            progress.advance(report.tally)
        if report.backlog:
            await report.drain()  # a slow reader holds this worker back, not the event loop

    signals = _Signals(report)
    failure = None
    async with anyio.create_task_group() as background:
        await background.start(signals.listen)  # from the start: the token fetch may be slow
        with signals.startup:
            async with api.retrigger(
                inputs.items(),
                api_settings,
                settings,
                on_outcome=on_outcome,
                follow=follow,
                history_key=history_key,
            ) as job:
                output.start()  # every check passed, the journal is locked: now truncate
                signals.attach(job)
                report.redactor.watch(job.secrets)
                if progress is not None:
                    progress.show()  # only now: a job refused at start draws no bar
                    background.start_soon(progress.count)
                background.start_soon(_flush_often, report)
                await job.wait()
                failure = job.failure
        summary = await report.finish(time.monotonic() - started)  # still listening meanwhile
        background.cancel_scope.cancel()
    if failure is not None:
        say(f"error: {failure}")
        return EXIT_PROBLEMS, summary
    if signals.received:
        return EXIT_STOPPED, summary
    recovered = follow is None or report.tally.recovered
    return (EXIT_OK if report.tally.clean and recovered else EXIT_PROBLEMS), summary


def _follow_settings(args: argparse.Namespace) -> FollowSettings | None:
    """``--wait``: follow each new run, as long and as often as the flags say."""
    if not args.wait:
        return None
    return FollowSettings(
        timeout=args.wait_timeout, cadence=Cadence.starting_at(args.poll_interval)
    )


async def _flush_often(report: Report) -> None:
    """Lines reach a pipe within a tenth of a second, even when outcomes trickle in."""
    while True:
        await anyio.sleep(FLUSH_INTERVAL)
        await report.drain()


class _Signals:
    """SIGINT/SIGTERM: the first stops the job gracefully (or its start-up), a second exits."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.startup = anyio.CancelScope()
        self.received = 0
        self._job: api.RetriggerJob | None = None

    def attach(self, job: api.RetriggerJob) -> None:
        """From now on a signal stops ``job`` instead of cancelling the start-up."""
        self._job = job
        if self.received:
            job.stop()

    async def listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Handle signals until cancelled; ready once the handlers are installed."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.received += 1
                if self.received > 1:
                    self.report.abandon()  # stdout keeps whole lines; the journal is whole
                    os._exit(EXIT_STOPPED)
                say(
                    f"{signal.Signals(signum).name}: finishing requests in flight, sending "
                    "nothing new (signal again to exit at once)"
                )
                if self._job is None:
                    self.startup.cancel()  # nothing sent yet: stop before the first request
                else:
                    self._job.stop()


def _interrupt(signum: int, frame: object) -> None:
    """A SIGTERM handler that stops like Ctrl-C (``run`` installs the same at start-up)."""
    del signum, frame
    raise KeyboardInterrupt


def _closing_line(summary: Summary, args: argparse.Namespace, code: int) -> str:
    where = f"in {args.output}" if args.output else "on stdout"
    line = (
        f"{summary.retriggered} re-triggered, {summary.failed} failed, "
        f"{summary.uncertain} uncertain, {summary.skipped} skipped"
        + (f", {summary.planned} planned" if summary.planned else "")
        + f" of {summary.total} in {summary.elapsed_s:.1f}s; JSON lines {where}"
    )
    if summary.recovered is not None:
        line += (
            f"\n  followed: {summary.recovered} recovered, {summary.failed_again} failed again, "
            f"{summary.unfinished} unfinished"
        )
    if args.journal is not None and code != EXIT_OK and not args.dry_run:
        journal = shlex.quote(str(args.journal))
        if args.paths and "-" not in args.paths:
            paths = " ".join(shlex.quote(p) for p in args.paths)
            line += f"\n  to resume: bulkretry retry {paths} --journal {journal}"
        else:
            line += (
                f"\n  to resume: run the same command again, same input, with --journal {journal}"
            )
    return line


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


class _StopOnSignal:
    """The first SIGINT/SIGTERM cancels a scope; its name is kept for the closing line."""

    def __init__(self) -> None:
        self.received: str | None = None

    async def listen(
        self, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Cancel ``scope`` on the first signal."""
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                self.received = signal.Signals(signum).name
                scope.cancel()


def demo(args: argparse.Namespace) -> int:
    """``bulkretry demo``: the real pipeline against the embedded emulator."""
    del args
    from bulkretry.cli.demo import run_demo  # noqa: PLC0415 - only the demo needs the emulator

    code, _ = _run(run_demo(sys.stdout.buffer))
    return code


def _api_settings(args: argparse.Namespace) -> ApiSettings:
    settings = load_api_settings(
        os.environ, base_url=args.base_url, ims_url=args.ims_url, org=args.org, sandbox=args.sandbox
    )
    for warning in settings.warnings:
        say(f"warning: {warning}")
    return settings


def _run(job: Coroutine[Any, Any, T]) -> T:
    async def main() -> T:
        return await job

    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": _has_uvloop()})


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401, PLC0415 - optional speed-up
    except ImportError:
        return False
    return True
