"""What every command shares: API settings from flags, the history key, running a job; and ``demo``.

``retry`` lives in ``retry.py``, ``failed`` in ``failed.py``, ``status`` in ``status.py``, and
their signal handling in ``signals.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

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

    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": _has_uvloop()})


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401, PLC0415 - optional speed-up
    except ImportError:
        return False
    return True
