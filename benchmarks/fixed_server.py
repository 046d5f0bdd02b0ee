"""A fixed-answer Flow Service stand-in that is never the bottleneck: raw asyncio + uvloop.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies, no chunked uploads)
to answer ``POST .../runs/{id}/action?op=re-trigger`` at once with
``{"id": "<uuid>", "etag": "\\"...\\""}``. There are no auth checks. Optional misbehaviour:

* ``--max-rate N``: a sliding one-second log of admitted re-triggers; above N the answer is
  ``429`` with ``Retry-After: 1`` (as the emulator's ``Faults(max_rate=...)``);
* ``--burst B``: make ``--max-rate`` a token bucket instead (N tokens a second, B saved up,
  full at start), as ``Faults(burst=...)``;
* ``--schedule 8:10,16:30``: change the cap to 10 at 8 s and 30 at 16 s, counted from the
  first re-trigger after start or reset (as ``Faults(rate_schedule=...)``);
* ``--latency S``: every answer leaves S seconds after its request arrived.

Bookkeeping for the benchmarks, read over the same port:

* ``GET /stats``: counts, 429s, run IDs re-triggered more than once, and arrival times
  (monotonic seconds) of every re-trigger request when ``--record-times`` is set;
* ``POST /reset``: forget everything (between rounds).

Run: ``python benchmarks/fixed_server.py --port 0`` prints ``PORT <n>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time

import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with bulkretry on CPython/Linux
    uvloop = None

_HEAD_END = b"\r\n\r\n"


class State:
    """What the server has seen since the last reset."""

    def __init__(
        self,
        *,
        max_rate: float | None,
        record_times: bool,
        burst: int | None = None,
        schedule: tuple[tuple[float, float], ...] = (),
    ) -> None:
        self.max_rate = max_rate
        self.record_times = record_times
        self.burst = burst
        self.schedule = schedule
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.ok = 0
        self.throttled = 0
        self.times: list[float] = []
        self.ok_times: list[float] = []
        self.successes: collections.Counter[bytes] = collections.Counter()
        self.admitted: collections.deque[float] = collections.deque()
        self.counter = 0
        self.origin: float | None = None
        self.tokens = float(self.burst or 0)
        self.refilled = 0.0

    def cap(self, now: float) -> float:
        assert self.max_rate is not None
        if self.origin is None:
            self.origin = self.refilled = now
        cap = self.max_rate
        for at, scheduled in self.schedule:
            if now - self.origin >= at:
                cap = scheduled
        return cap

    def over_rate(self, now: float) -> bool:
        if self.max_rate is None:
            return False
        cap = self.cap(now)
        if self.burst is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.refilled) * cap)
            self.refilled = now
            if self.tokens < 1:
                return True
            self.tokens -= 1
            return False
        admitted = self.admitted
        while admitted and admitted[0] <= now - 1.0:
            admitted.popleft()
        if len(admitted) >= cap:
            return True
        admitted.append(now)
        return False

    def stats(self) -> dict[str, object]:
        twice = [k.decode() for k, v in self.successes.items() if v > 1]
        return {
            "requests": self.requests,
            "ok": self.ok,
            "throttled": self.throttled,
            "distinct_ok": len(self.successes),
            "retriggered_twice": len(twice),
            "retriggered_twice_sample": twice[:5],
            "times": self.times,
            "ok_times": self.ok_times,
            "origin": self.origin,
        }


def _response(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


_THROTTLED = _response(
    b"429 Too Many Requests",
    b'{"error_code":"429050","message":"Too many requests"}',
    b"Retry-After: 1\r\n",
)
_NOT_FOUND = _response(b"404 Not Found", b'{"message":"not found"}')


class Http(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order (no client pipelines)."""

    def __init__(self, state: State, latency: float) -> None:
        self.state = state
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        del exc
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while (end := buffer.find(_HEAD_END)) >= 0:
            head = buffer[:end]
            length = 0
            at = head.find(b"ontent-Length:")
            if at < 0:
                at = head.find(b"ontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 14 : stop if stop >= 0 else len(head)])
            if len(buffer) < end + 4 + length:
                break
            body = buffer[end + 4 : end + 4 + length]
            buffer = buffer[end + 4 + length :]
            self.answer(head, body)
        self.buffer = buffer

    def answer(self, head: bytes, body: bytes) -> None:
        del body
        line = head[: head.find(b"\r\n")]
        method, _, rest = line.partition(b" ")
        target = rest.rpartition(b" ")[0]
        state = self.state
        if b"/action" in target and method == b"POST":
            state.requests += 1
            now = time.monotonic()
            if state.record_times:
                state.times.append(now)
            if state.over_rate(now):
                state.throttled += 1
                reply = _THROTTLED
            else:
                state.ok += 1
                if state.record_times:
                    state.ok_times.append(now)
                run_id = target[target.find(b"/runs/") + 6 : target.find(b"/action")]
                state.successes[run_id] += 1
                state.counter += 1
                n = f"{state.counter:032x}"
                new_id = f"{n[:8]}-{n[8:12]}-{n[12:16]}-{n[16:20]}-{n[20:]}"
                reply = _response(
                    b"200 OK", b'{"id":"%s","etag":"\\"%s\\""}' % (new_id.encode(), n.encode())
                )
        elif target == b"/stats":
            reply = _response(b"200 OK", orjson.dumps(state.stats()))
        elif target == b"/reset":
            state.reset()
            reply = _response(b"200 OK", b"{}")
        else:
            reply = _NOT_FOUND
        if self.latency:
            self.loop.call_later(self.latency, self.send, reply)
        else:
            self.send(reply)

    def send(self, reply: bytes) -> None:
        if self.transport is not None:
            self.transport.write(reply)


async def serve(host: str, port: int, state: State, latency: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Http(state, latency), host, port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-rate", type=float, help="429 above this many per sliding second")
    parser.add_argument("--burst", type=int, help="--max-rate as a token bucket of B tokens")
    parser.add_argument("--schedule", default="", help="cap changes: SECONDS:CAP,...")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--record-times", action="store_true", help="keep arrival times")
    args = parser.parse_args()
    schedule = tuple(
        (float(at), float(cap))
        for at, cap in (part.split(":") for part in args.schedule.split(",") if part)
    )
    state = State(
        max_rate=args.max_rate,
        record_times=args.record_times,
        burst=args.burst,
        schedule=schedule,
    )
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(serve(args.host, args.port, state, args.latency))
    except KeyboardInterrupt:
        os._exit(0)


if __name__ == "__main__":
    main()
