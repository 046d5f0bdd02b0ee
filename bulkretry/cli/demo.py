"""``bulkretry demo``: the real pipeline against the embedded emulator, no account needed."""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Final

from bulkretry import _api as api
from bulkretry._api_settings import ApiSettings
from bulkretry._follow import Cadence, FollowSettings
from bulkretry._history_location import HistoryLocation
from bulkretry._outcomes import Finished, Line
from bulkretry._report import Report
from bulkretry._settings import JobSettings
from bulkretry._sources import InputFiles
from bulkretry._text import Secret
from bulkretry.emulator import Emulator, Lifecycle, serve

_ORG: Final = "DEMO0000000000000000000@AdobeOrg"
_API_KEY: Final = "demo-client-id"
_TOKEN: Final = "demo-token"  # noqa: S105 - the emulator's own, not a credential
_RUN_SECONDS: Final = 1.0
"""How long an emulated re-run takes; followed at a demo's pace, not the default 5 s."""
_FOLLOW: Final = FollowSettings(timeout=30.0, cadence=Cadence.starting_at(0.4))


def sample(name: str) -> Path:
    """A file of ``samples/``: packaged with the wheel, or beside the source tree."""
    package = Path(__file__).parent.parent
    packaged = package / "_samples" / name
    return packaged if packaged.exists() else package.parent / "samples" / name


async def run_demo(out: BinaryIO) -> tuple[int, None]:
    """Serve the demo runs, retry the sample IDs with ``--wait``, print the lines.

    The emulated re-runs take a second; one sample run is poison and fails again.
    """
    emulator = Emulator(
        org_id=_ORG,
        api_key=_API_KEY,
        static_tokens=frozenset({_TOKEN}),
        lifecycle=Lifecycle(seconds=_RUN_SECONDS),
    )
    emulator.load_runs(sample("demo-runs.json"))
    started = time.monotonic()
    async with serve(emulator) as server:
        settings = ApiSettings(
            base_url=server.base_url,
            api_key=_API_KEY,
            org_id=_ORG,
            sandbox="prod",
            credentials=Secret(_TOKEN),
        )
        with (
            InputFiles([str(sample("run-ids.txt"))]) as inputs,
            tempfile.TemporaryDirectory(prefix="bulkretry-demo-") as state,
        ):
            report = Report(out, followed=True)
            failures: Counter[str] = Counter()
            history = HistoryLocation(path=Path(state) / "history.sqlite3")  # never the user's

            def on_line(line: Line) -> None:
                report.outcome(line)
                if isinstance(line, Finished) and line.error:
                    failures[line.error.split(":", 1)[0]] += 1

            async with api.retrigger(
                inputs.items(),
                settings,
                JobSettings(rate=20, history=history),
                on_outcome=on_line,
                follow=_FOLLOW,
            ) as job:
                report.redactor.watch(job.secrets)
                await job.wait()
        summary = report.summary(time.monotonic() - started)
    twice = [run for run, count in emulator.stats.retriggers.items() if count > 1]
    print(  # noqa: T201
        f"\ndemo: {summary.retriggered} re-triggered, {summary.failed} refused by the API, "
        f"{summary.skipped} skipped, against the embedded emulator at {server.base_url}.\n"
        f"Followed through: {summary.recovered} of {summary.retriggered} recovered, "
        f"{summary.failed_again} failed again"
        + (f" with {', '.join(sorted(failures))}" if failures else "")
        + ".\n"
        "Next: set AEP_ORG_ID and AEP_CLIENT_ID/AEP_CLIENT_SECRET, then "
        "'bulkretry retry your-run-ids.txt' (see README).",
        file=sys.stderr,
    )
    return (1 if twice else 0), None
