"""bulkretry from Python: re-trigger runs, then list failed ones.

Runs as is against the built-in emulator:  python samples/library_example.py
For real use, drop the emulator and call ``bulkretry.load_api_settings(os.environ)``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

import bulkretry
from bulkretry.emulator import Emulator, Run, serve


async def main() -> None:
    """Re-trigger three runs and list the failed runs of one flow."""
    emulator = Emulator(auto_create=True)  # stands in for Adobe Flow Service
    emulator.add_run(Run(id="run-9", flow_id="flow-1", created_at=datetime.now(UTC)))
    async with serve(emulator) as server:
        api = bulkretry.load_api_settings(
            {
                "AEP_FLOW_SERVICE_URL": server.base_url,  # real use: Adobe's URL is the default
                "AEP_ORG_ID": emulator.org_id,
                "AEP_API_KEY": emulator.api_key,
                "AEP_ACCESS_TOKEN": "static-token",
            }
        )
        settings = bulkretry.JobSettings(rate=5, concurrency=5)
        async with bulkretry.retrigger(["run-1", "run-2", "run-2", "bad id"], api, settings) as job:
            async for outcome in job:  # one outcome per run ID read
                match outcome:
                    case bulkretry.Retriggered(run_id=old, new_run_id=new):
                        print(f"{old} -> {new}")
                    case bulkretry.Failed() | bulkretry.Uncertain():
                        print(f"{outcome.run_id}: {outcome.event}: {outcome.error}")
                    case bulkretry.Skipped(run_id=run_id, reason=reason):
                        print(f"{run_id}: skipped ({reason})")

        listing = bulkretry.ListingSettings(flow_ids=("flow-1",), include_empty=True)
        async with bulkretry.list_failed(api, listing) as lister:
            async for record in lister.records():
                print(f"failed: {record.run_id} in {record.flow_id} at {record.created_at}")


if __name__ == "__main__":
    anyio.run(main)
