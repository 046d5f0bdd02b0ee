"""bulkretry: re-trigger failed Adobe Experience Platform dataflow runs in bulk.

The CLI is built on this API; use it directly to re-trigger from Python::

    import bulkretry

    async with bulkretry.retrigger(run_ids, api_settings, bulkretry.JobSettings(rate=5)) as job:
        async for outcome in job:
            print(outcome)
"""

from importlib import metadata as _metadata

from ._api import RetriggerJob, list_failed, retrigger
from ._discovery import Lister, ListingSettings, RunRecord
from ._errors import (
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
from ._follow import Cadence, FollowSettings
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
from ._settings import ApiSettings, ClientCredentials, JobSettings, load_api_settings
from ._text import Secret

try:
    __version__ = _metadata.version("bulkretry")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

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
