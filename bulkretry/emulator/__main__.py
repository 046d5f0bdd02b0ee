"""``python -m bulkretry.emulator``: serve the emulator for manual tries and benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from bulkretry.emulator.app import DEFAULT_API_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, Emulator
from bulkretry.emulator.faults import DRAW_ORDER, Faults
from bulkretry.emulator.lifecycle import Lifecycle
from bulkretry.emulator.server import serve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bulkretry.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--runs", help="JSON file: a list of runs to load")
    parser.add_argument(
        "--auto-create", action="store_true", help="treat unknown run IDs as failed runs"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--max-rate", type=float, help="re-triggers admitted per second")
    parser.add_argument(
        "--burst", type=int, help="make --max-rate a token bucket holding this many tokens"
    )
    parser.add_argument(
        "--rate-schedule",
        type=_schedule,
        default=(),
        help="change --max-rate mid-job: SECONDS:CAP,... from the first re-trigger",
    )
    parser.add_argument("--token-lifetime", type=float, default=86400.0)
    parser.add_argument(
        "--run-seconds",
        type=float,
        default=Lifecycle().seconds,
        help="how long a re-triggered run stays inProgress before it ends (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ops",
        default="re-trigger,RE_TRIGGER",
        help="re-trigger op spellings accepted, comma-separated (default: both)",
    )
    parser.add_argument(
        "--retrigger-answer",
        choices=["tutorial", "spec"],
        default="tutorial",
        help="answer {id, etag} (the tutorial) or a whole run with eTag (the OpenAPI file)",
    )
    parser.add_argument(
        "--run-answer",
        choices=["items", "run"],
        default="items",
        help="GET /runs/{id} answers {items: [run]} (the tutorial) or the run (the OpenAPI file)",
    )
    for name in DRAW_ORDER:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=float, default=0.0, help="probability per re-trigger")
    return parser


def _schedule(text: str) -> tuple[tuple[float, float], ...]:
    """``8:10,16:30`` -> ((8.0, 10.0), (16.0, 30.0))."""
    try:
        return tuple(
            (float(at), float(cap)) for at, cap in (part.split(":") for part in text.split(","))
        )
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SECONDS:CAP,... not {text!r}") from None


async def _main(args: argparse.Namespace) -> None:
    faults = Faults(
        latency=args.latency,
        max_rate=args.max_rate,
        burst=args.burst,
        rate_schedule=args.rate_schedule,
        **{name: getattr(args, name) for name in DRAW_ORDER},
    )
    emu = Emulator(
        faults=faults,
        auto_create=args.auto_create,
        token_lifetime=args.token_lifetime,
        seed=args.seed,
        lifecycle=Lifecycle(seconds=args.run_seconds),
        ops=frozenset(args.ops.split(",")),
        retrigger_answer=args.retrigger_answer,
        run_answer=args.run_answer,
    )
    if args.runs:
        emu.load_runs(args.runs)
    async with serve(emu, args.host, args.port) as server:
        sys.stderr.write(
            f"Flow Service  {server.base_url}\n"
            f"IMS token     {server.ims_url}\n"
            f"org {emu.org_id}  api key {DEFAULT_API_KEY}  sandbox {emu.sandbox}\n"
            f"static token {DEFAULT_TOKEN}  client secret {DEFAULT_SECRET}\n"
            f"{len(emu.runs)} runs loaded; Ctrl-C stops\n"
        )
        await asyncio.Event().wait()


def main() -> None:
    """Serve until interrupted."""
    args = _parser().parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
