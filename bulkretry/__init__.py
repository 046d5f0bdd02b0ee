"""bulkretry: re-trigger failed Adobe Experience Platform dataflow runs in bulk.

The CLI is built on this API; use it directly to re-trigger from Python::

    import bulkretry

    async with bulkretry.retrigger(run_ids, api_settings, bulkretry.JobSettings(rate=5)) as job:
        async for outcome in job:
            print(outcome)
"""

from importlib import metadata as _metadata

from .api import RetriggerJob, list_failed, retrigger
from .config import ApiSettings, ClientCredentials, JobSettings, Secret, load_api_settings
from .discovery import Lister, ListingSettings, RunRecord
from .errors import (
    APIError,
    AuthError,
    BulkRetryError,
    ConnectError,
    ConnectionLostError,
    JournalError,
    JournalLockedError,
    OutputError,
    TransportError,
    UsageError,
)
from .outcomes import Failed, Outcome, Planned, Retriggered, Skipped, Summary, Uncertain

try:
    __version__ = _metadata.version("bulkretry")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "APIError",
    "ApiSettings",
    "AuthError",
    "BulkRetryError",
    "ClientCredentials",
    "ConnectError",
    "ConnectionLostError",
    "Failed",
    "JobSettings",
    "JournalError",
    "JournalLockedError",
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
