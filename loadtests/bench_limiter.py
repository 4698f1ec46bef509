"""The limiter's cost per decision, side by side with a plain INCR fixed-window limiter.

    .venv/bin/python loadtests/bench_limiter.py [--decisions 5000] [--accounts 20] [--repeat 3]

Needs Redis on 127.0.0.1:6379; uses db 11 (``--db``) and FLUSHES it first (and at the end).
Same client settings as gateway/kv.py: redis-py asyncio, socket and connect timeouts 1 s,
one attempt (no retry), one connection, decisions made one after another (sequential awaits).

Contenders, each making ``--decisions`` decisions over ``--accounts`` accounts:

- ``plain (pipeline)``: ``INCR key; EXPIRE key 60 NX`` sent as one non-transactional pipeline
  (one round trip), key = account + current minute;
- ``plain (MULTI)``: the same two commands inside MULTI/EXEC (still one round trip);
- ``vin limiter``: ``Limiter.admit()`` from gateway/limits/limiter.py, the production script
  (admit.lua, one EVALSHA), with realistic arguments: a fresh jti (replay cache), cost 2 (a
  lookup), an API key id, and the VIN pseudonyms of ``limiter.signals_of(vin)`` (distinct-VIN
  set and serial walk). The policy is raised so that nothing is ever refused: every decision
  takes the longest path of the script (replay, two buckets, score, distinct VINs, walk);
- ``empty script`` (for reference): EVALSHA of ``return 1`` with the same 8 keys and 22
  arguments, i.e. what any Lua script costs before it does anything.

redis-py's ``incr()`` sends ``INCRBY key 1``, so commandstats lists the plain INCR as ``incrby``.

Measured per decision: (a) microseconds as seen by the client (mean, p50, p99), (b) Redis
commands, from ``INFO commandstats`` deltas (``evalsha`` plus every ``redis.call()`` inside the
script, which commandstats counts per command too), (c) server-side microseconds (commandstats
``usec``: for EVALSHA, the whole script including its inner calls). Each repetition runs all
contenders interleaved in chunks of ``--chunk`` decisions (order rotated per repetition), so
that background load on a shared machine falls on each alike; the table shows the MEDIAN over
repetitions, and the client-time ratio is the median of the per-repetition ratios.
Commandstats are server-wide: another client using the same Redis during the run inflates the
counts of the chunks it overlaps: the counts and server times come from the chunks no other
client disturbed (another client can only add to the counts, so the per-command minimum over
chunks is the contender's own profile; the script says how many chunks were clean).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import Settings  # noqa: E402
from gateway.limits.limiter import Limiter, LimitPolicy  # noqa: E402
from loadtests.public_vins import PUBLIC_VINS  # noqa: E402

VINS = PUBLIC_VINS
WINDOW_S = 60
PLAIN_LIMIT = 10**9

Decide = Callable[[int], Awaitable[Any]]


def make_client(db: int) -> Any:
    # as gateway/kv.py: bounded, one attempt, no backoff
    return aioredis.Redis.from_url(
        f"redis://127.0.0.1:6379/{db}",
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )


async def commandstats(client: Any) -> dict[str, tuple[int, int]]:
    """{command: (calls, usec)} from INFO commandstats."""
    raw = await client.info("commandstats")
    out = {}
    for name, fields in raw.items():
        out[name.removeprefix("cmdstat_")] = (int(fields["calls"]), int(fields["usec"]))
    return out


def delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0:
            out[name] = (calls - c0, usec - u0)
    return out


def plain(client: Any, accounts: list[str], *, transaction: bool) -> Decide:
    async def decide(i: int) -> bool:
        key = f"pl:{{{accounts[i % len(accounts)]}}}:{int(time.time()) // WINDOW_S}"
        pipe = client.pipeline(transaction=transaction)
        pipe.incr(key)
        pipe.expire(key, WINDOW_S, nx=True)
        count, _ = await pipe.execute()
        return int(count) <= PLAIN_LIMIT

    return decide


def empty_script(client: Any, accounts: list[str]) -> Decide:
    """EVALSHA of ``return 1`` with as many keys and arguments as admit.lua: Lua's own cost."""
    script = client.register_script("return 1")
    args = ["admit", 300, 2, 10**9, 10**9, 0, 3600, 300, "v" * 20, 86400, 10**9, "p" * 16]
    args += [4352, 20, 10**9, 3600, 900, 86400, 2592000, "", "0", 12]

    async def decide(i: int) -> Any:
        tag = "vl:{" + accounts[i % len(accounts)] + "}"
        keys = [tag + s for s in (":ban", ":strikes", ":jti", ":bucket", ":kb", ":score")]
        return await script(keys=[*keys, tag + ":vins", tag + ":seq"], args=args)

    return decide


def vin_limiter(limiter: Limiter, accounts: list[str], jtis: list[str]) -> Decide:
    async def decide(i: int) -> Any:
        vin = VINS[i % len(VINS)]
        decision = await limiter.admit(
            accounts[i % len(accounts)],
            jti=jtis[i],
            jti_ttl=300,
            cost=2,
            key_id="ak_bench",
            vin=limiter.signals_of(vin),
        )
        if decision.verdict != "ok":
            raise RuntimeError(f"unexpected verdict {decision.verdict} ({decision.policy})")
        return decision

    return decide


async def measure_chunk(client: Any, decide: Decide, start: int, count: int) -> dict[str, Any]:
    """``count`` decisions from index ``start``: wall time, latencies, commandstats delta."""
    before = await commandstats(client)
    clock = time.perf_counter_ns
    latencies = [0] * count
    begin = clock()
    for j in range(count):
        t0 = clock()
        await decide(start + j)
        latencies[j] = clock() - t0
    elapsed = clock() - begin
    diff = delta(before, await commandstats(client))
    diff.pop("info", None)
    return {"elapsed": elapsed, "latencies": latencies, "commands": diff}


async def repetition(
    client: Any, deciders: dict[str, Decide], n: int, chunk: int, shift: int
) -> dict[str, dict[str, Any]]:
    """All contenders, interleaved in chunks (rotated order), so that background load on a
    shared machine falls on each of them alike."""
    names = list(deciders)
    names = names[shift % len(names) :] + names[: shift % len(names)]
    for name in names:  # warm-up (connection, script cache, keys), indexes of its own
        for i in range(200):
            await deciders[name](n + i)
    acc: dict[str, dict[str, Any]] = {
        name: {"elapsed": 0, "latencies": [], "chunks": []} for name in names
    }
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        for name in names:
            part = await measure_chunk(client, deciders[name], start, count)
            acc[name]["elapsed"] += part["elapsed"]
            acc[name]["latencies"] += part["latencies"]
            acc[name]["chunks"].append((count, part["commands"]))
    out = {}
    for name, r in acc.items():
        lat = sorted(r["latencies"])
        out[name] = {
            "mean_us": r["elapsed"] / n / 1000,
            "p50_us": lat[n // 2] / 1000,
            "p99_us": lat[int(n * 0.99)] / 1000,
            "chunks": r["chunks"],
        }
    return out


def command_profile(
    chunks: list[tuple[int, dict[str, tuple[int, int]]]],
) -> tuple[dict[str, tuple[float, float]], int]:
    """Commands per decision, from the chunks no other client disturbed.

    Commandstats are server-wide, so another client's commands can only ADD to a chunk's
    counts: the per-command minimum over all chunks is the contender's own profile, and a chunk
    whose counts equal it exactly is clean. Returns ({command: (calls, usec)} per decision,
    averaged over the clean chunks, and the number of clean chunks)."""
    names = {cmd for _, cmds in chunks for cmd in cmds}
    least = {cmd: min(cmds.get(cmd, (0, 0))[0] / count for count, cmds in chunks) for cmd in names}
    least = {cmd: calls for cmd, calls in least.items() if calls}
    clean = [
        (count, cmds)
        for count, cmds in chunks
        if set(cmds) == set(least)
        and all(cmds[cmd][0] == round(least[cmd] * count) for cmd in least)
    ]
    # every chunk disturbed: the minima, with usec from all chunks
    used = clean or chunks
    decisions = sum(count for count, _ in used)
    profile = {
        cmd: (least[cmd], sum(cmds.get(cmd, (0, 0))[1] for _, cmds in used) / decisions)
        for cmd in sorted(least)
    }
    return profile, len(clean)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repetitions; commands per decision from the undisturbed chunks."""
    chunks = [chunk for r in runs for chunk in r["chunks"]]
    per_cmd, clean = command_profile(chunks)
    scripted = "evalsha" in per_cmd or "eval" in per_cmd
    if scripted:
        # the client sends EVALSHA; the rest are the script's redis.call()s
        sent = sum(per_cmd[c][0] for c in ("evalsha", "eval") if c in per_cmd)
        # EVALSHA's usec already includes its inner calls
        server_us = sum(per_cmd[c][1] for c in ("evalsha", "eval") if c in per_cmd)
    else:
        sent = sum(c for c, _ in per_cmd.values())
        server_us = sum(u for _, u in per_cmd.values())
    return {
        "mean_us": statistics.median(r["mean_us"] for r in runs),
        "p50_us": statistics.median(r["p50_us"] for r in runs),
        "p99_us": statistics.median(r["p99_us"] for r in runs),
        "sent_cmds": sent,
        "all_cmds": sum(c for c, _ in per_cmd.values()),
        "server_us": server_us,
        "per_cmd": per_cmd,
        "means": [r["mean_us"] for r in runs],
        "clean": clean,
        "chunks": len(chunks),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", type=int, default=11)
    parser.add_argument("--chunk", type=int, default=500, help="decisions per interleaved chunk")
    args = parser.parse_args()
    n = args.decisions

    client = make_client(args.db)
    try:
        await client.flushdb()
    except Exception as exc:  # a plain message instead of a traceback
        print(f"bench_limiter: Redis at 127.0.0.1:6379 unavailable: {exc}", file=sys.stderr)
        return 2
    info = await client.info("server")
    load_before = os.getloadavg()

    accounts = [f"acct-{i:03d}-{secrets.token_hex(4)}" for i in range(args.accounts)]
    unbounded = Settings(
        limit_vin_burst=10**9,
        limit_vin_per_s=10**9,
        limit_distinct_max=10**9,
        limit_seq_threshold=10**9,
    )
    policy = LimitPolicy.from_settings(unbounded)
    limiter = Limiter(client, policy, key=b"k" * 32)
    contenders = ["plain (pipeline)", "plain (MULTI)", "empty script", "vin limiter"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for rep in range(args.repeat):
        jtis = [secrets.token_urlsafe(16) for _ in range(n + 200)]
        deciders = {
            "plain (pipeline)": plain(client, accounts, transaction=False),
            "plain (MULTI)": plain(client, accounts, transaction=True),
            "empty script": empty_script(client, accounts),
            "vin limiter": vin_limiter(limiter, accounts, jtis),
        }
        measured = await repetition(client, deciders, n, args.chunk, rep)
        for name in contenders:
            runs[name].append(measured[name])
    load_after = os.getloadavg()
    await client.flushdb()
    await client.aclose()

    results = {name: summarize(runs[name]) for name in contenders}
    print(
        f"bench_limiter: {n} sequential decisions x {args.repeat} repetitions per contender, "
        f"{args.accounts} accounts; Redis {info['redis_version']} on 127.0.0.1:6379 db {args.db}"
    )
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average before {tuple(round(x, 2) for x in load_before)}, "
        f"after {tuple(round(x, 2) for x in load_after)} (other processes may run)"
    )
    print()
    header = (
        f"{'contender':<18} {'us/decision':>11} {'p50 us':>8} {'p99 us':>8} "
        f"{'round trips':>11} {'cmds sent':>9} {'Redis cmds':>10} {'server us':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in contenders:
        r = results[name]
        print(
            f"{name:<18} {r['mean_us']:>11.1f} {r['p50_us']:>8.1f} {r['p99_us']:>8.1f} "
            f"{1:>11} {r['sent_cmds']:>9.2f} {r['all_cmds']:>10.2f} {r['server_us']:>9.1f}"
        )
    print()
    print("us/decision: client wall time per decision, median of the repetitions' means")
    print("  (means per repetition: " + "; ".join(
        f"{name}: " + ", ".join(f"{m:.1f}" for m in results[name]["means"]) for name in contenders
    ) + ")")  # fmt: skip
    print("cmds sent: commands the client sends per decision (one round trip each time);")
    print("Redis cmds: every command INFO commandstats counted, the script's redis.call()s too;")
    print("server us: commandstats usec per decision (EVALSHA's includes its inner calls)")
    print()
    for name in contenders:
        per_cmd = results[name]["per_cmd"]
        parts = [f"{c} {calls:g} ({usec:.2f} us)" for c, (calls, usec) in sorted(per_cmd.items())]
        print(f"{name}: " + ", ".join(parts))
        r = results[name]
        print(
            f"  counts and server us from {r['clean']} of {r['chunks']} chunks that no other"
            " client disturbed" + ("" if r["clean"] else " (none: minima over all chunks)")
        )
    base = results["plain (pipeline)"]
    ours = results["vin limiter"]
    ratios = [
        a["mean_us"] / b["mean_us"]
        for a, b in zip(runs["vin limiter"], runs["plain (pipeline)"], strict=True)
    ]
    print()
    print(
        "ratio vin limiter / plain (pipeline): "
        f"{statistics.median(ratios):.2f}x client time (per repetition: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"), {ours['all_cmds'] / base['all_cmds']:.1f}x Redis commands, "
        f"{ours['server_us'] / base['server_us']:.1f}x server time; round trips 1 vs 1"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
