"""One exception tree for everything bulkretry raises on purpose.

    BulkRetryError
    ├── UsageError              bad flags, environment or input files: exit 2, nothing sent
    ├── JournalLockedError      another process holds the journal: exit 2
    ├── JournalError            the journal cannot be written: the job stops, exit 1
    │   └── HistoryError        the history database failed mid-job: the job stops, exit 1
    ├── OutputError             the JSON lines cannot be written (disk full): exit 1
    ├── AuthError               IMS refused the credentials or cannot be reached: exit 2
    ├── TransportError          the HTTP exchange did not complete
    │   ├── ConnectError        never reached the server: certainly not applied
    │   └── ConnectionLostError sent, but no answer came back: maybe applied
    │       └── AnswerTooLargeError  the answer passed the size cap: maybe applied
    └── APIError                the server answered with an error status

The CLI catches ``BulkRetryError`` and prints one line; anything else is a bug.
"""

from __future__ import annotations


class BulkRetryError(Exception):
    """Root of every error bulkretry raises deliberately."""


class UsageError(BulkRetryError):
    """The command line, the environment or an input file is unusable."""


class JournalLockedError(BulkRetryError):
    """Another bulkretry process is writing the same journal."""


class JournalError(BulkRetryError):
    """A journal record could not be written, so no further request may be sent."""


class HistoryError(JournalError):
    """The history database failed mid-job: like a journal that cannot be written."""


class OutputError(BulkRetryError):
    """The JSON lines could not be written; what was sent is in the journal, if any."""


class AuthError(BulkRetryError):
    """No token could be obtained: the job cannot start."""


class TransportError(BulkRetryError):
    """The request did not produce an HTTP answer."""


class ConnectError(TransportError):
    """The connection was never made, so the request was certainly not applied."""


class ConnectionLostError(TransportError):
    """The request left, but its answer was lost (timeout, dropped connection)."""


class AnswerTooLargeError(ConnectionLostError):
    """The answer passed the size cap and was not read: as good as lost, maybe applied."""


class APIError(BulkRetryError):
    """The API answered with an error status; ``code`` and ``message`` are its own words."""

    def __init__(
        self, status: int, code: str | None, message: str, *, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        super().__init__(self.describe())

    def describe(self) -> str:
        """Render as ``code: message``, the way Adobe's docs quote errors."""
        return f"{self.code}: {self.message}" if self.code else self.message
