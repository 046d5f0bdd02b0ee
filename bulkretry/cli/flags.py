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
    _number_flag(group, RATE, DEFAULT_RATE, "R", "at most R requests started per second")
    _number_flag(
        group, MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS, "N", "attempts per run ID, the first included"
    )
    _number_flag(group, TIMEOUT, DEFAULT_TIMEOUT, "S", "seconds for one request")


def _number_flag(
    group: argparse._ArgumentGroup, bounds: Bounds, default: N, metavar: str, what: str
) -> None:
    """A number flag named by its ``bounds``, parsed as its default's type and checked.

    The help says what it is, its range and its default, the same way for every one.
    """
    group.add_argument(
        bounds.flag,
        type=_within(bounds, type(default)),
        default=default,
        metavar=metavar,
        help=f"{what}, {bounds.describe()} (default: {default:g})",
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
        value = _number(text, kind)
        if not bounds.allows(value):
            raise argparse.ArgumentTypeError(f"must be {bounds.describe()}, got {text}")
        return value

    return parse


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def _number(text: str, kind: type[N]) -> N:
    """``text`` as a number of ``kind``, or argparse's error saying what was expected."""
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
