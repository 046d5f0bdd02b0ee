"""bulkretry benchmarks (issue 7): run by hand, loopback only, each part bounded and self-stopping.

    python benchmarks/run.py                      # everything, one table (about 5 minutes)
    python benchmarks/run.py --only floor pacing  # some parts
    python benchmarks/run.py --markdown benchmarks/RESULTS.md
    python benchmarks/run.py --only profile       # cProfile of bulkretry on the floor job

Parts: floor, memory, pacing, throttled, latency (the default set) and profile.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
BASE_PATH = "/data/foundation/flowservice"
PARTS = ("floor", "memory", "pacing", "throttled", "capchange", "latency")
EXTRA_PARTS = ("profile",)


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class Row:
    part: str
    figure: str
    value: str
    target: str = ""
    ok: bool | None = None


@dataclass(slots=True)
class Table:
    rows: list[Row] = field(default_factory=list)

    def add(
        self,
        part: str,
        figure: str,
        value: str,
        target: str = "",
        ok: bool | None = None,  # noqa: FBT001
    ) -> None:
        row = Row(part, figure, value, target, ok)
        self.rows.append(row)
        print(
            f"  {figure}: {value}" + (f"  [target {target}: {_verdict(ok)}]" if target else ""),
            flush=True,
        )

    def text(self) -> str:
        header = ("part", "figure", "value", "target", "holds")
        cells = [
            header,
            *((r.part, r.figure, r.value, r.target, _verdict(r.ok)) for r in self.rows),
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = ["| part | figure | value | target | holds |", "|---|---|---|---|---|"]
        lines += [
            f"| {r.part} | {r.figure} | {r.value} | {r.target} | {_verdict(r.ok)} |"
            for r in self.rows
        ]
        return "\n".join(lines)


def _verdict(ok: bool | None) -> str:  # noqa: FBT001
    return "" if ok is None else ("yes" if ok else "NO")


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True, slots=True)
class Ran:
    wall: float
    cpu: float  # user + system seconds of the child
    maxrss_mb: float
    returncode: int


def run_measured(
    cmd: Sequence[str],
    *,
    stdin: Path | None,
    stdout: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
) -> Ran:
    """Run one command, stdin from a file, stdout to a file; its own rusage via wait4."""
    with stdin.open("rb") if stdin else open(os.devnull, "rb") as fin, stdout.open("wb") as fout:  # noqa: PTH123
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=subprocess.DEVNULL, env=env)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Ran(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode)


class FixedServer:
    """benchmarks/fixed_server.py in its own process, with its stats over HTTP."""

    def __init__(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [PY, str(HERE / "fixed_server.py"), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"fixed server did not start: {line!r}")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"
        self.base_url = self.root + BASE_PATH

    def stats(self) -> dict[str, object]:
        with urllib.request.urlopen(self.root + "/stats", timeout=30) as answer:
            return json.loads(answer.read())

    def reset(self) -> None:
        request = urllib.request.Request(self.root + "/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@contextmanager
def fixed_server(*extra: str) -> Iterator[FixedServer]:
    server = FixedServer(*extra)
    try:
        yield server
    finally:
        server.close()


def bulkretry_cmd() -> list[str]:
    script = Path(PY).parent / "bulkretry"
    return [str(script)] if script.exists() else [PY, "-m", "bulkretry"]


def bulkretry_env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_")}
    env |= {
        "AEP_ORG_ID": "BENCH@AdobeOrg",
        "AEP_API_KEY": "bench-client",
        "AEP_ACCESS_TOKEN": "bench-token",
        "AEP_FLOW_SERVICE_URL": base_url,
        "BULKRETRY_HISTORY": "off",  # the history variant names its own file
    }
    return env


def write_ids(path: Path, count: int, seed: int) -> Path:
    rng = random.Random(seed)
    with path.open("w") as out:
        for _ in range(count):
            out.write(f"{uuid.UUID(int=rng.getrandbits(128), version=4)}\n")
    return path


def summary_of(path: Path) -> dict[str, object]:
    """The last JSON line of a bulkretry output file (its summary)."""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        tail = handle.read().splitlines()
    return json.loads(tail[-1]) if tail else {}


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """Most arrivals in any half-open window [t, t + window) (it suffices to start at arrivals)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


# --------------------------------------------------------------------------- parts


@dataclass(slots=True)
class Context:
    work: Path
    table: Table
    rounds: int
    baseline: Path | None = None  # an earlier release's bulkretry, for the "no slower" row
    ids_cache: dict[int, Path] = field(default_factory=dict)

    def ids(self, count: int) -> Path:
        if count not in self.ids_cache:
            self.ids_cache[count] = write_ids(self.work / f"ids-{count}.txt", count, seed=count)
        return self.ids_cache[count]


def server_capacity(server: FixedServer) -> tuple[float, str]:
    """Requests/s the fixed server sustains: wrk if installed, else benchmarks/rawload.py."""
    url = server.base_url + "/runs/capacity/action?op=re-trigger"
    if shutil.which("wrk"):
        script = Path(tempfile.mkstemp(suffix=".lua")[1])
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        out = subprocess.run(
            ["wrk", "-t1", "-c64", "-d3s", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        script.unlink()
        rate = next(
            float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec:")
        )
        return rate, "wrk -t1 -c64"
    out = subprocess.run(
        [
            PY,
            str(HERE / "rawload.py"),
            "127.0.0.1",
            str(server.port),
            "--connections",
            "64",
            "--seconds",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return float(json.loads(out)["rate"]), "rawload.py, 64 connections"


def part_floor(ctx: Context) -> None:
    n, n_curl, conc = 20_000, 1_000, 32
    ids = ctx.ids(n)
    table = ctx.table
    with fixed_server() as server:
        env = bulkretry_env(server.base_url)
        capacity, how = server_capacity(server)
        server.reset()
        variants: dict[str, Callable[[int], list[str]]] = {
            "floor": lambda _: [
                PY,
                str(HERE / "floor.py"),
                server.base_url,
                "--concurrency",
                str(conc),
            ],
            "bulkretry": lambda _: [
                *bulkretry_cmd(),
                "retry",
                "--rate",
                "0",
                "--concurrency",
                str(conc),
            ],
            "bulkretry --journal": lambda r: [
                *bulkretry_cmd(),
                "retry",
                "--rate",
                "0",
                "--concurrency",
                str(conc),
                "--journal",
                str(ctx.work / f"journal-{r}.jsonl"),
            ],
            "bulkretry --history": lambda r: [
                *bulkretry_cmd(),
                "retry",
                "--rate",
                "0",
                "--concurrency",
                str(conc),
                "--history",
                str(ctx.work / f"history-{r}.sqlite3"),
            ],
        }
        if ctx.baseline is not None:
            baseline = str(ctx.baseline)
            variants["baseline"] = lambda _: [
                baseline,
                "retry",
                "--rate",
                "0",
                "--concurrency",
                str(conc),
            ]
        results: dict[str, list[Ran]] = {name: [] for name in variants}
        for r in range(ctx.rounds):
            for name, make in variants.items():
                out = ctx.work / "floor-out.jsonl"
                ran = run_measured(make(r), stdin=ids, stdout=out, env=env)
                stats = server.stats()
                server.reset()
                lines = count_lines(out)
                want = n if name == "floor" else n + 1
                if ran.returncode != 0 or lines != want or stats["ok"] != n:
                    raise RuntimeError(
                        f"{name}: rc={ran.returncode} lines={lines} server ok={stats['ok']}"
                    )
                results[name].append(ran)
                print(
                    f"    round {r + 1} {name}: {n / ran.wall:,.0f}/s "
                    f"({ran.wall:.2f}s wall, {ran.cpu:.2f}s cpu)",
                    flush=True,
                )
        curl_rate = curl_floor(ctx, server, n_curl, conc)

    def rate(name: str) -> float:
        return statistics.median(n / ran.wall for ran in results[name])

    def cpu_us(name: str) -> float:
        return statistics.median(ran.cpu / n * 1e6 for ran in results[name])

    floor_rate = rate("floor")
    table.add(
        "floor",
        "fixed server capacity",
        f"{capacity:,.0f} req/s ({how})",
        "several x floor",
        capacity >= 3 * floor_rate,
    )
    table.add(
        "floor",
        f"raw aiohttp floor ({conc} in flight, {n:,} IDs)",
        f"{floor_rate:,.0f} req/s, {cpu_us('floor'):.0f} us CPU/req",
    )
    table.add(
        "floor",
        f"bulkretry --history --rate 0 --concurrency {conc}",
        f"{rate('bulkretry --history'):,.0f} req/s, {cpu_us('bulkretry --history'):.0f} us CPU/req",
    )
    for name in ("bulkretry", "bulkretry --journal"):
        ratios = [
            n / b.wall / (n / f.wall) for f, b in zip(results["floor"], results[name], strict=True)
        ]
        ratio = statistics.median(ratios)
        table.add(
            "floor",
            f"{name} --rate 0 --concurrency {conc}",
            f"{rate(name):,.0f} req/s, {cpu_us(name):.0f} us CPU/req",
        )
        journal = "journal" in name
        table.add(
            "floor",
            f"{name} / floor (median of {ctx.rounds} alternating rounds)",
            f"{ratio:.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})",
            ">= 0.8" if journal else ">= 1.2",
            ratio >= (0.8 if journal else 1.2),
        )
    ratios = [
        b.wall / h.wall
        for b, h in zip(results["bulkretry"], results["bulkretry --history"], strict=True)
    ]
    history_ratio = statistics.median(ratios)
    table.add(
        "floor",
        f"bulkretry --history (SQLite) / --history off (median of {ctx.rounds} rounds)",
        f"{history_ratio:.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})",
        ">= 0.9",
        history_ratio >= 0.9,
    )
    if ctx.baseline is not None:
        ratios = [
            b.wall / o.wall for o, b in zip(results["bulkretry"], results["baseline"], strict=True)
        ]
        ratio = statistics.median(ratios)
        table.add(
            "floor",
            f"baseline (--baseline's bulkretry) --rate 0 --concurrency {conc}",
            f"{rate('baseline'):,.0f} req/s, {cpu_us('baseline'):.0f} us CPU/req",
        )
        table.add(
            "floor",
            f"bulkretry / baseline (median of {ctx.rounds} alternating rounds)",
            f"{ratio:.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})",
            ">= 0.95 (no slower)",
            ratio >= 0.95,  # round-to-round noise is about 0.05
        )
    table.add("floor", f"xargs -P {conc} curl ({n_curl:,} IDs)", f"{curl_rate:,.0f} req/s")
    table.add(
        "floor",
        "bulkretry / curl",
        f"{rate('bulkretry') / curl_rate:.0f}x",
        ">= 20x",
        rate("bulkretry") / curl_rate >= 20,
    )


def curl_floor(ctx: Context, server: FixedServer, n: int, conc: int) -> float:
    ids = ctx.ids(n)
    url = server.base_url + "/runs/{}/action?op=re-trigger"
    cmd = [
        "xargs",
        "-P",
        str(conc),
        "-I{}",
        "curl",
        "-s",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Authorization: Bearer curl",
        url,
    ]
    ran = run_measured(cmd, stdin=ids, stdout=ctx.work / "curl-out.txt")
    ok = server.stats()["ok"]
    server.reset()
    if ok != n:
        raise RuntimeError(f"curl: server saw {ok} of {n}")
    return n / ran.wall


def part_memory(ctx: Context) -> None:
    table = ctx.table
    runs = []
    for n in (1_000, 200_000, 1_000_000):
        history = ctx.work / f"dry-history-{n}.sqlite3"  # as by default: one, read, still empty
        ran = run_measured(
            [*bulkretry_cmd(), "retry", "--dry-run", "--history", str(history)],
            stdin=ctx.ids(n),
            stdout=ctx.work / "dry.jsonl",
            env=bulkretry_env("https://platform.adobe.io/data/foundation/flowservice"),
        )
        planned = summary_of(ctx.work / "dry.jsonl").get("planned")
        if ran.returncode != 0 or planned != n:
            raise RuntimeError(f"dry run {n}: rc={ran.returncode} planned={planned}")
        runs.append((n, ran))
        print(
            f"    dry run {n:,}: {ran.maxrss_mb:.0f} MB peak, {n / ran.wall:,.0f} IDs/s", flush=True
        )
    base = runs[0][1].maxrss_mb
    for n, ran in runs[1:]:
        growth = (ran.maxrss_mb - base) * 1024 * 1024 / n
        big = n == 1_000_000
        table.add(
            "memory",
            f"peak RSS, --dry-run {n:,} IDs via stdin",
            f"{ran.maxrss_mb:.0f} MB ({growth:.0f} B/ID over a 1,000-ID run; "
            f"{n / ran.wall:,.0f} IDs/s)",
            "< 64 MB" if big else "",
            ran.maxrss_mb < 64 if big else None,
        )
    table.add(
        "memory",
        "a Python set of the same 1,000,000 IDs (the dedup floor)",
        f"{dedup_set_mb(ctx.ids(1_000_000)):.0f} MB",
    )
    n = 200_000
    with fixed_server() as server:
        out = ctx.work / "real.jsonl"
        ran = run_measured(
            [*bulkretry_cmd(), "retry", "--rate", "0", "--concurrency", "32"],
            stdin=ctx.ids(n),
            stdout=out,
            env=bulkretry_env(server.base_url),
        )
        done = summary_of(out).get("retriggered")
    if ran.returncode != 0 or done != n:
        raise RuntimeError(f"real job: rc={ran.returncode} retriggered={done}")
    table.add(
        "memory",
        f"peak RSS, real job {n:,} IDs via stdin (--concurrency 32)",
        f"{ran.maxrss_mb:.0f} MB ({n / ran.wall:,.0f} req/s)",
        "< 100 MB",
        ran.maxrss_mb < 100,
    )


def dedup_set_mb(ids: Path) -> float:
    code = (
        "import sys\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "before = rss()\n"
        "seen = {line.strip() for line in open(sys.argv[1])}\n"
        "print((rss() - before) / 2**20)\n"
    )
    return float(
        subprocess.run(
            [PY, "-c", code, str(ids)], capture_output=True, text=True, check=True
        ).stdout
    )


def part_pacing(ctx: Context) -> None:
    for rate, seconds in ((50, 6), (500, 4)):
        n = rate * seconds
        with fixed_server("--record-times") as server:
            out = ctx.work / "pacing.jsonl"
            ran = run_measured(
                [*bulkretry_cmd(), "retry", "--rate", str(rate), "--concurrency", "32"],
                stdin=ctx.ids(n),
                stdout=out,
                env=bulkretry_env(server.base_url),
            )
            times = server.stats()["times"]
        assert isinstance(times, list)
        if ran.returncode != 0 or len(times) != n:
            raise RuntimeError(f"pacing: rc={ran.returncode} requests={len(times)}")
        worst = max_in_window(times)
        used = (n - 1) / (max(times) - min(times)) / rate
        ctx.table.add(
            "pacing",
            f"--rate {rate}, {n} IDs: most starts in any 1 s window",
            f"{worst}",
            f"<= {rate}",
            worst <= rate,
        )
        ctx.table.add(
            "pacing",
            f"--rate {rate}: share of R used (first to last arrival)",
            f"{used:.1%}",
            ">= 97%",
            used >= 0.97,
        )


SHAPES = {
    "window": ("a sliding 1 s window", ()),
    "bucket": ("a token bucket, burst 5", ("--burst", "5")),
}


def throttled_job(ctx: Context, name: str, n: int, *server_args: str) -> tuple[dict, dict]:
    """bulkretry --rate 100 --concurrency 32 against a throttling fixed server."""
    with fixed_server(*server_args, "--record-times") as server:
        out = ctx.work / f"{name}.jsonl"
        ran = run_measured(
            [*bulkretry_cmd(), "retry", "--rate", "100", "--concurrency", "32"],
            stdin=ctx.ids(n),
            stdout=out,
            env=bulkretry_env(server.base_url),
        )
        stats = server.stats()
    summary = summary_of(out)
    if summary.get("total") != n:
        raise RuntimeError(f"{name}: rc={ran.returncode} summary={summary}")
    return stats, summary


def part_throttled(ctx: Context) -> None:
    """Both throttle shapes at 30/s: share of the cap used, 429s, nothing failed or doubled."""
    n, limit = 600, 30
    table = ctx.table
    for shape, (label, extra) in SHAPES.items():
        stats, summary = throttled_job(
            ctx, f"throttled-{shape}", n, "--max-rate", str(limit), *extra
        )
        ok_times = sorted(stats["ok_times"])  # type: ignore[arg-type]
        span = ok_times[-1] - ok_times[0]
        used = (len(ok_times) - 1) / span / limit
        table.add(
            "throttled",
            f"{label} at {limit}/s; --rate 100 --concurrency 32, {n} IDs: "
            "share of the cap used (first to last success)",
            f"{used:.1%} ({span:.1f} s)",
            ">= 95%",
            used >= 0.95,
        )
        refused = int(stats["throttled"])  # type: ignore[call-overload]
        table.add(
            "throttled",
            f"{shape}: 429 answers received",
            f"{refused} ({refused / n:.0%} of IDs)",
            f"< {n // 5}",
            refused < n / 5,
        )
        doubled = stats["retriggered_twice"]
        done = f"{summary.get('retriggered')} / {stats['distinct_ok']}"
        table.add(
            "throttled",
            f"{shape}: failed; re-triggered twice; re-triggered (summary / server)",
            f"{summary.get('failed')}; {doubled}; {done}",
            f"0; 0; {n}",
            summary.get("failed") == 0
            and doubled == 0
            and summary.get("retriggered") == n == stats["distinct_ok"],
        )


def part_capchange(ctx: Context) -> None:
    """A cap of 30/s, then 10/s from 8 s, then 30/s from 16 s: how fast the pace follows.

    Down: seconds from the drop until the starts of the trailing second are at most 1.1x the
    new cap. Up: seconds from the rise until the successes of the trailing second reach 90 %
    of it. Both are read from the server's arrival times, in 50 ms steps.
    """
    n, high, low, drop, rise = 600, 30, 10, 8.0, 16.0
    for shape, (label, extra) in SHAPES.items():
        stats, summary = throttled_job(
            ctx,
            f"capchange-{shape}",
            n,
            "--max-rate",
            str(high),
            "--schedule",
            f"{drop}:{low},{rise}:{high}",
            *extra,
        )
        origin = float(stats["origin"])  # type: ignore[arg-type]
        starts = sorted(t - origin for t in stats["times"])  # type: ignore[attr-defined]
        oks = sorted(t - origin for t in stats["ok_times"])  # type: ignore[attr-defined]
        down = settle(starts, drop, lambda count: count <= 1.1 * low)
        up = settle(oks, rise, lambda count: count >= 0.9 * high)
        ok = summary.get("failed") == 0 and stats["retriggered_twice"] == 0
        ctx.table.add(
            "cap change",
            f"{label}, {high}/s -> {low}/s at {drop:.0f} s: followed down within",
            f"{down:.2f} s",
            "<= 2 s",
            down <= 2.0,
        )
        ctx.table.add(
            "cap change",
            f"{shape}, {low}/s -> {high}/s at {rise:.0f} s: followed up within "
            "(failed; re-triggered twice)",
            f"{up:.2f} s ({summary.get('failed')}; {stats['retriggered_twice']})",
            "<= 5 s (0; 0)",
            up <= 5.0 and ok,
        )


def settle(times: Sequence[float], change: float, good: Callable[[int], bool]) -> float:
    """Seconds after ``change`` until the count of ``times`` in the trailing second is good."""
    at = change
    while at < change + 30:
        at += 0.05
        count = bisect.bisect_left(times, at) - bisect.bisect_left(times, at - 1.0)
        if good(count):
            return at - change
    return math.inf


def part_latency(ctx: Context) -> None:
    n, conc, latency = 320, 64, 1.0
    with fixed_server("--latency", str(latency)) as server:
        out = ctx.work / "latency.jsonl"
        ran = run_measured(
            [*bulkretry_cmd(), "retry", "--rate", "0", "--concurrency", str(conc)],
            stdin=ctx.ids(n),
            stdout=out,
            env=bulkretry_env(server.base_url),
        )
    summary = summary_of(out)
    if ran.returncode != 0 or summary.get("retriggered") != n:
        raise RuntimeError(f"latency: rc={ran.returncode} summary={summary}")
    elapsed = float(summary["elapsed_s"])  # type: ignore[arg-type]
    achieved = n / elapsed
    ctx.table.add(
        "latency",
        f"1 s server latency, --concurrency {conc} --rate 0, {n} IDs",
        f"{achieved:.1f} req/s ({achieved / conc:.0%} of {conc}/s, {elapsed:.2f} s)",
        f"~{conc}/s (>= 90%)",
        achieved >= 0.9 * conc,
    )


def part_profile(ctx: Context) -> None:
    """cProfile of bulkretry on the floor job: top functions by own time, per request."""
    import pstats  # noqa: PLC0415 - only this part needs it

    n = 20_000
    prof = ctx.work / "bulkretry.prof"
    with fixed_server() as server:
        run_measured(
            [
                PY,
                "-m",
                "cProfile",
                "-o",
                str(prof),
                "-m",
                "bulkretry",
                "retry",
                "--rate",
                "0",
                "--concurrency",
                "32",
            ],
            stdin=ctx.ids(n),
            stdout=ctx.work / "profile.jsonl",
            env=bulkretry_env(server.base_url),
        )
    stats = pstats.Stats(str(prof))
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"  cProfile, {n:,} re-triggers (times inflated by profiling; compare shares):")
    print(f"  {'own us/req':>10} {'cum us/req':>10} {'calls/req':>9}  function")
    for (filename, line, name), (_, ncalls, own, cum, _) in entries[:25]:
        where = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        print(
            f"  {own / n * 1e6:10.1f} {cum / n * 1e6:10.1f} {ncalls / n:9.2f}  "
            f"{name} ({where}:{line})"
        )
    ctx.table.add("profile", "cProfile written to", str(prof))


PART_FUNCS: dict[str, Callable[[Context], None]] = {
    "floor": part_floor,
    "memory": part_memory,
    "pacing": part_pacing,
    "throttled": part_throttled,
    "capchange": part_capchange,
    "latency": part_latency,
    "profile": part_profile,
}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = subprocess.run(
        [*bulkretry_cmd(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
        f"Python {platform.python_version()}; {version}; {time.strftime('%Y-%m-%d')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="bulkretry benchmarks; see benchmarks/README.md")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*PARTS, *EXTRA_PARTS],
        metavar="PART",
        help=f"run only these parts: {', '.join([*PARTS, *EXTRA_PARTS])}",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating floor rounds (3)")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="SCRIPT",
        help="another release's bulkretry script, run in the floor rounds (issue 13: no slower)",
    )
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    about = machine()
    print(about, flush=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bulkretry-bench-"))
    ctx = Context(work, Table(), args.rounds, baseline=args.baseline)
    try:
        for part in parts:
            print(f"== {part}", flush=True)
            t0 = time.monotonic()
            PART_FUNCS[part](ctx)
            print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        if not args.keep and "profile" not in parts:
            shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    print(f"\n{about}; total {total:.0f} s\n")
    print(ctx.table.text())
    if args.markdown:
        args.markdown.write_text(f"{about}; total {total:.0f} s\n\n{ctx.table.markdown()}\n")
        print(f"\nwritten to {args.markdown}")


if __name__ == "__main__":
    main()
