"""``bulkretry retry``: re-trigger run IDs from files or stdin, with progress and a closing line."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from bulkretry import _api as api
from bulkretry._api_settings import ApiSettings, check_url
from bulkretry._follow import Cadence, FollowSettings
from bulkretry._history_location import history_location
from bulkretry._outcomes import Finished, Line, Summary
from bulkretry._report import Report
from bulkretry._settings import JobSettings
from bulkretry._sources import InputFiles

from .commands import _api_settings, _history_key, _run
from .console import EXIT_OK, EXIT_PROBLEMS, EXIT_STOPPED, say, setup_diagnostics
from .output import STDIN, Output, check_output
from .signals import _Signals

if TYPE_CHECKING:
    from bulkretry.cli.progress import Progress

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
        if progress is not None:
            if isinstance(outcome, Finished):
                progress.followed(report.tally)
            else:
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
