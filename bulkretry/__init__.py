"""bulkretry: re-trigger failed Adobe Experience Platform dataflow runs in bulk.

The CLI is built on this API; use it directly to re-trigger from Python::

    import bulkretry

    async with bulkretry.retrigger(run_ids, api_settings, bulkretry.JobSettings(rate=5)) as job:
        async for outcome in job:
            print(outcome)
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from ._api import RetriggerJob, list_failed, retrigger
    from ._api_settings import ApiSettings, ClientCredentials, load_api_settings
    from ._discovery import Lister, ListingSettings, RunRecord
    from ._errors import (
        APIError,
        AuthError,
        BulkRetryError,
        ConnectError,
        ConnectionLostError,
        HistoryError,
        JournalError,
        JournalLockedError,
        OutputError,
        TransportError,
        UsageError,
    )
    from ._follow import Cadence, FollowSettings
    from ._history_location import HistoryLocation
    from ._outcomes import (
        Failed,
        Finished,
        Line,
        Outcome,
        Planned,
        Retriggered,
        Skipped,
        Summary,
        Uncertain,
    )
    from ._settings import JobSettings
    from ._text import Secret

    __version__: str

_HOMES = {
    "._api": ("RetriggerJob", "list_failed", "retrigger"),
    "._discovery": ("Lister", "ListingSettings", "RunRecord"),
    "._errors": (
        "APIError",
        "AuthError",
        "BulkRetryError",
        "ConnectError",
        "ConnectionLostError",
        "HistoryError",
        "JournalError",
        "JournalLockedError",
        "OutputError",
        "TransportError",
        "UsageError",
    ),
    "._follow": ("Cadence", "FollowSettings"),
    "._outcomes": (
        "Failed",
        "Finished",
        "Line",
        "Outcome",
        "Planned",
        "Retriggered",
        "Skipped",
        "Summary",
        "Uncertain",
    ),
    "._api_settings": ("ApiSettings", "ClientCredentials", "load_api_settings"),
    "._history_location": ("HistoryLocation",),
    "._settings": ("JobSettings",),
    "._text": ("Secret",),
}
"""Where each public name lives. Imported on first use (PEP 562), so that ``bulkretry``
itself loads in a blink: the command installs its signal handlers before the heavy
imports (aiohttp, anyio), and a Ctrl-C during them is an exit, not a traceback."""
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> object:
    if name == "__version__":
        from importlib import metadata  # noqa: PLC0415 - only when asked

        try:
            value: object = metadata.version("bulkretry")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
            value = "0.0.0+unknown"
    elif name in _HOME:
        value = getattr(_importlib.import_module(_HOME[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "APIError",
    "ApiSettings",
    "AuthError",
    "BulkRetryError",
    "Cadence",
    "ClientCredentials",
    "ConnectError",
    "ConnectionLostError",
    "Failed",
    "Finished",
    "FollowSettings",
    "HistoryError",
    "HistoryLocation",
    "JobSettings",
    "JournalError",
    "JournalLockedError",
    "Line",
    "Lister",
    "ListingSettings",
    "Outcome",
    "OutputError",
    "Planned",
    "RetriggerJob",
    "Retriggered",
    "RunRecord",
    "Secret",
    "Skipped",
    "Summary",
    "TransportError",
    "Uncertain",
    "UsageError",
    "__version__",
    "list_failed",
    "load_api_settings",
    "retrigger",
]
