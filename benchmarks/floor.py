"""The floor: the least a Python client must do for the same job, in raw aiohttp.

N workers share one session (uvloop, as bulkretry), read run IDs from stdin, POST the
re-trigger, parse the JSON answer and write one JSON line per run to stdout. No
validation, pacing, retries, journal or structured logging.

    python benchmarks/floor.py URL_BASE [--concurrency N] < ids.txt > out.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp
import orjson
import uvloop


async def run(base: str, concurrency: int) -> None:
    ids = iter(sys.stdin.buffer.read().decode().split())
    out = sys.stdout.buffer
    headers = {"Authorization": "Bearer floor", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            for run_id in ids:
                url = f"{base}/runs/{run_id}/action?op=re-trigger"
                async with session.post(url) as response:
                    answer = orjson.loads(await response.read())
                out.write(
                    orjson.dumps(
                        {
                            "run_id": run_id,
                            "new_run_id": answer["id"],
                            "etag": answer["etag"],
                            "status": response.status,
                        },
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    out.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    uvloop.run(run(args.base, args.concurrency))


if __name__ == "__main__":
    main()
