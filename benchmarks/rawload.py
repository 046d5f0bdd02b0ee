"""A raw HTTP/1.1 load generator (asyncio protocols + uvloop): how fast is the fixed server?

C keep-alive connections each send one re-trigger POST, wait for the whole answer, and
repeat, for D seconds. Prints ``{"requests": n, "seconds": s, "rate": r}`` as JSON.
Used by ``run.py`` when ``wrk`` is not installed.

    python benchmarks/rawload.py HOST PORT [--connections C] [--seconds D]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvloop

_REQUEST = (
    b"POST /data/foundation/flowservice/runs/rawload/action?op=re-trigger HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
)


class Client(asyncio.Protocol):
    """Send, read one full answer, send again, until the deadline."""

    def __init__(self, deadline: float, done: asyncio.Future[None], counts: list[int]) -> None:
        self.deadline = deadline
        self.done = done
        self.counts = counts
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(_REQUEST)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end]
            at = head.find(b"Content-Length:")
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop > 0 else end])
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            self.counts[0] += 1
            if time.monotonic() < self.deadline:
                self.transport.write(_REQUEST)  # type: ignore[union-attr]
            else:
                self.transport.close()  # type: ignore[union-attr]
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        del exc
        if not self.done.done():
            self.done.set_result(None)


async def run(host: str, port: int, connections: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    counts = [0]
    started = time.monotonic()
    deadline = started + seconds
    waits = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(lambda d=done: Client(deadline, d, counts), host, port)
        waits.append(done)
    await asyncio.gather(*waits)
    elapsed = time.monotonic() - started
    return {"requests": counts[0], "seconds": elapsed, "rate": counts[0] / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args.host, args.port, args.connections, args.seconds))))


if __name__ == "__main__":
    main()
