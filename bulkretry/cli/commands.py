"""What every command shares: API settings from flags, the history key, running a job; and ``demo``.

``retry`` lives in ``retry.py``, ``failed`` in ``failed.py``, ``status`` in ``status.py``, and
their signal handling in ``signals.py``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

import anyio

from bulkretry._api_settings import DEFAULT_SANDBOX, ApiSettings, load_api_settings
from bulkretry._errors import UsageError

from .console import say

T = TypeVar("T")


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

    _spare_the_collector()
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": _has_uvloop()})


YOUNG_OBJECTS: Final = 10_000
"""Allocations between young-generation collections (CPython's default is 700)."""


def _spare_the_collector() -> None:
    """Collect cycles less often: a job's objects die young, by reference counting.

    Each request allocates a few hundred containers (aiohttp's request and answer, frames,
    futures) that almost never form cycles; at the default threshold the cyclic collector
    ran every few requests and took about a sixth of the CPU of a ``--rate 0`` job. What
    was loaded before the job starts (modules, settings) is frozen: never looked at again.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401, PLC0415 - optional speed-up
    except ImportError:
        return False
    return True
