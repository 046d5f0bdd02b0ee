"""The journal as a ledger: resume rules from the index read at start, records appended at once."""

from __future__ import annotations

from ._journal import Journal, JournalIndex
from ._outcomes import Failed, Finished, Outcome, Retriggered, Settled, Skipped, Uncertain

_NOT_APPLIED_ON_RESUME = "journal has an intent with no outcome: the request may have been applied"


class JournalLedger:
    """The journal: resume rules from the index read at start, records appended at once."""

    def __init__(
        self, journal: Journal | None, index: JournalIndex, *, retry_uncertain: bool
    ) -> None:
        self._journal = journal
        self._index = index
        self._retry_uncertain = retry_uncertain

    async def claim(self, run_id: str, flow_id: str | None) -> Outcome | None:
        del flow_id
        earlier = await self.peek(run_id)
        if earlier is None and self._journal is not None:
            self._journal.intent(run_id)
        return earlier

    async def peek(self, run_id: str) -> Outcome | None:
        record = self._index.get(run_id)
        if record is None:
            return None
        if record.state == "retriggered":
            new_run_id = record.new_run_id or ""
            return Skipped(
                run_id=run_id,
                reason="already-retriggered",
                new_run_id=new_run_id,
                etag=record.etag,
            )
        if record.state == "failed" or self._retry_uncertain:
            return None
        error = record.error or _NOT_APPLIED_ON_RESUME
        return Uncertain(run_id=run_id, status=record.status, error=error, attempts=0)

    def record(self, outcome: Settled) -> None:
        if self._journal is not None:
            self._journal.outcome(outcome)

    def ahead(self, run_id: str, flow_id: str | None) -> None:
        """Nothing ahead: an intent line costs no wait, it is written as its request leaves."""
        del run_id, flow_id

    def unused(self, run_id: str) -> None:
        del run_id

    def release(self, run_id: str, instead: Outcome) -> None:
        """Write what the history knows; a run it skipped is "failed" here: tried next time."""
        if self._journal is None:
            return
        if isinstance(instead, Skipped) and instead.reason == "already-retriggered":
            new_run_id = instead.new_run_id or ""
            self._journal.outcome(
                Retriggered(
                    run_id=run_id, new_run_id=new_run_id, etag=instead.etag, attempts=0, status=0
                )
            )
        elif isinstance(instead, Uncertain):
            self._journal.outcome(instead)
        else:
            error = f"not sent: {instead.event}"
            self._journal.outcome(Failed(run_id=run_id, status=None, error=error, attempts=0))

    async def serve(self) -> None:
        if self._journal is not None:
            await self._journal.sync_forever()

    async def flush(self) -> None:
        """Nothing to do: every record reached the OS when it was written."""

    async def finished(self, line: Finished) -> None:
        """The journal keeps re-triggers only; how new runs end is the history's."""
