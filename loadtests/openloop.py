"""Fixed-rate (open-loop) load for ``POST /v1/lookups``, latency from each request's schedule.

    .venv/bin/python loadtests/openloop.py --url http://127.0.0.1:8000 --rate 1000 \
        --duration 10 --lines FILE [--max-connections 256]

Request i is due at t0 + i/rate, whether or not earlier answers have come back, and its latency
is measured from that scheduled time, not from when it was written: a server (or a generator)
that falls behind is charged for the wait, so there is no coordinated omission. Requests go
over raw keep-alive HTTP/1.1 connections (asyncio streams, a minimal request writer and a
response reader that understands Content-Length and chunked bodies); a request due while every
open connection is busy gets a new connection, up to --max-connections, then waits for one.

FILE has one request per line: ``API_KEY<TAB>ATTESTATION<TAB>VIN`` (``-`` for no credentials,
for the bare endpoint). Each line is used once; when the run needs more lines than FILE has,
lines are reused (and counted as ``reused``).

Prints one JSON object: scheduled/sent/completed counts, non-2xx, errors, achieved rate, p50,
p99 and max latency (ms, from the schedule), how late the generator itself wrote requests
(``send_lag_*``: its own share of the latency) and the connections it opened. Nothing from FILE
is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def build_request(host: str, path: str, line: str) -> bytes:
    api_key, token, vin = line.split("\t", 2)
    body = json.dumps({"vin": vin}).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if api_key != "-":
        head.append(f"Authorization: Bearer {api_key}")
        head.append(f"VIN-Attestation: {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one response; its body is read and discarded."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection") != "close"


class Pool:
    """Idle keep-alive connections; opens one more when all are busy, up to ``cap``."""

    def __init__(self, host: str, port: int, cap: int) -> None:
        self.host, self.port, self.cap = host, port, cap
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()
        self.waiters: deque[asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
        self.waiters = deque()
        self.open = 0
        self.opened = 0

    async def acquire(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.popleft()
        if self.open < self.cap:
            self.open += 1
            self.opened += 1
            try:
                return await asyncio.open_connection(self.host, self.port)
            except BaseException:
                self.open -= 1
                raise
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
        if conn is not None:
            conn[1].close()
        self.open -= 1
        # a waiter may now open a connection of its own
        while self.waiters and self.open < self.cap:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.open += 1
                self.opened += 1
                task = asyncio.ensure_future(asyncio.open_connection(self.host, self.port))
                task.add_done_callback(lambda t, w=waiter: _hand_over(t, w, self))

    def close(self) -> None:
        while self.idle:
            self.idle.popleft()[1].close()


def _hand_over(task: asyncio.Future, waiter: asyncio.Future, pool: Pool) -> None:  # type: ignore[type-arg]
    if task.exception() is not None:
        pool.open -= 1
        if not waiter.done():
            waiter.set_exception(task.exception())  # type: ignore[arg-type]
    elif not waiter.done():
        waiter.set_result(task.result())
    else:
        pool.release(task.result())


async def run(args: argparse.Namespace, lines: list[str]) -> dict[str, float | int]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    total = int(args.rate * args.duration)
    authority = f"{host}:{port}"
    requests = [build_request(authority, args.path, lines[i % len(lines)]) for i in range(total)]
    pool = Pool(host, port, args.max_connections)
    latencies: list[float] = []
    lags: list[float] = []
    counts = {"sent": 0, "completed": 0, "non_2xx": 0, "errors": 0}
    loop = asyncio.get_running_loop()

    async def one(data: bytes, due: float) -> None:
        conn = None
        try:
            conn = await pool.acquire()
            reader, writer = conn
            lags.append(loop.time() - due)
            writer.write(data)
            counts["sent"] += 1
            status, keep = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            counts["errors"] += 1
            pool.discard(conn)
            return
        latencies.append(loop.time() - due)
        counts["completed"] += 1
        if not 200 <= status < 300:
            counts["non_2xx"] += 1
        if keep:
            pool.release(conn)
        else:
            pool.discard(conn)

    tasks: set[asyncio.Task[None]] = set()
    t0 = loop.time() + 0.05
    i = 0
    while i < total:
        now = loop.time()
        while i < total and t0 + i / args.rate <= now:
            task = asyncio.create_task(one(requests[i], t0 + i / args.rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, t0 + i / args.rate - loop.time()))
    end_schedule = loop.time()
    if tasks:
        _, late = await asyncio.wait(set(tasks), timeout=args.grace)
        for task in late:
            task.cancel()
        counts["errors"] += len(late)
    elapsed = max(loop.time(), end_schedule) - t0
    pool.close()
    latencies.sort()
    lags.sort()
    ms = 1000.0
    return {
        "scheduled": total,
        **counts,
        "reused": max(0, total - len(lines)),
        "target_rate": args.rate,
        "achieved_rate": counts["completed"] / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * ms,
        "p99_ms": percentile(latencies, 99) * ms,
        "max_ms": (latencies[-1] if latencies else math.nan) * ms,
        "send_lag_p50_ms": percentile(lags, 50) * ms,
        "send_lag_p99_ms": percentile(lags, 99) * ms,
        "connections": pool.opened,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL, http://127.0.0.1:PORT")
    parser.add_argument("--path", default="/v1/lookups")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of schedule")
    parser.add_argument("--lines", required=True, help="API_KEY<TAB>ATTESTATION<TAB>VIN lines")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--grace", type=float, default=10.0, help="wait for late answers (s)")
    args = parser.parse_args(argv)
    started = time.time()
    lines = [ln for ln in Path(args.lines).read_text().splitlines() if ln]
    result = asyncio.run(run(args, lines))
    result["wall_s"] = time.time() - started
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
