"""The flags several commands share, and the argparse types that check numbers as they parse."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

from bulkretry._settings import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    MAX_ATTEMPTS,
    RATE,
    TIMEOUT,
    Bounds,
)

from .console import LOG_LEVELS


def _history_flag(group: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--history",
        metavar="LOCATION",
        help="recovery history: a SQLite file or a postgresql:// URL, 'off' for none "
        "(BULKRETRY_HISTORY; default: $XDG_STATE_HOME/bulkretry/history.sqlite3)",
    )


def _api_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Flow Service (flag > environment > default)")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="Flow Service root (AEP_FLOW_SERVICE_URL; https, or http on loopback)",
    )
    group.add_argument("--ims-url", metavar="URL", help="IMS token endpoint (AEP_IMS_TOKEN_URL)")
    group.add_argument("--org", metavar="ORG_ID", help="IMS org, x-gw-ims-org-id (AEP_ORG_ID)")
    group.add_argument(
        "--sandbox",
        metavar="NAME",
        help="sandbox, x-sandbox-name (AEP_SANDBOX_NAME, default: prod)",
    )


def _pace_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pace and retries")
    group.add_argument(
        "--rate",
        type=_within(RATE, float),
        default=DEFAULT_RATE,
        metavar="R",
        help=f"at most R requests started per second, {RATE.describe()} "
        f"(default: {DEFAULT_RATE:g})",
    )
    group.add_argument(
        "--max-attempts",
        type=_within(MAX_ATTEMPTS, int),
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help=f"attempts per run ID, the first included, {MAX_ATTEMPTS.describe()} "
        f"(default: {DEFAULT_MAX_ATTEMPTS})",
    )
    group.add_argument(
        "--timeout",
        type=_within(TIMEOUT, float),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds for one request, {TIMEOUT.describe()} (default: {DEFAULT_TIMEOUT:g})",
    )


def _operator_flags(parser: argparse.ArgumentParser, *, progress: bool) -> None:
    group = parser.add_argument_group("terminal")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress and no closing summary on stderr (errors still shown)",
    )
    if progress:
        group.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="live progress on stderr (default: when stderr is a terminal)",
        )
    group.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="warning",
        help="diagnostics on stderr from this level up (default: warning)",
    )


N = TypeVar("N", int, float)


def _within(bounds: Bounds, kind: type[N]) -> Callable[[str], N]:
    """An argparse type: a number of ``kind`` inside ``bounds``, or a message with the range."""

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not bounds.allows(value):
            raise argparse.ArgumentTypeError(f"must be {bounds.describe()}, got {text}")
        return value

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value
