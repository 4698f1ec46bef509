"""Soak: mixed locust traffic against the production layout, watching for growth and loss.

    .venv/bin/python loadtests/soak.py [--duration 10m] [--users 50] [--spawn-rate 5]
        [--interval 10] [--redis-url redis://127.0.0.1:6379/13]
        [--postgres-url postgresql://postgres@127.0.0.1:5432] [--write-docs]

The layout is production's: `vin-gateway serve --workers 2` on Redis + PostgreSQL (two fresh
databases made by this command, migrated with `vin-gateway migrate`, dropped at the end) with
`VINGW_SEARCHLOG_CONSUMER=false` on the workers and one `vin-gateway searchlog-writer`. The
limits are the defaults; the gateway trusts 127.0.0.1 as its proxy (`VINGW_TRUSTED_PROXIES`)
so that every simulated user's `X-Forwarded-For` gives it a network of its own and the
per-network limits of registration and login stay at their defaults too. Argon2 runs at its
minimal cost (as in bench_lookup.py): registrations and guessed logins would otherwise spend
the 2 cores on hashing.

Traffic (loadtests/locustfile.py, one headless locust process): honest workshops (API key,
client-signed ES256 attestations), web users (password login, gateway-issued attestations from
`POST /v1/attestations`), scrapers (serial walks), VIN guessers (invalid VINs) and login
guessers. By default 30 % of `--users` are web users, `--users // 25` (at least 1) of each
abuser kind, the rest workshops. The abusers must be refused (their 429/403/422 are expected,
counted as successes by the locustfile); the honest users must not be.

Every `--interval` seconds it samples: RSS and open file descriptors (/proc/<pid>/fd) of the
master, each worker and the writer; the Redis db's key count (DBSIZE; keys without a TTL from
INFO keyspace) and the server's used_memory; the search-log stream's length (XLEN) and pending
entries. At the middle of the run and when the traffic stops it takes a census of the db: every
key (the test-run lock excepted) by shape (hash tags and ids replaced by `*`) with its count,
its longest remaining TTL and its memory (MEMORY USAGE). After the traffic it waits for the
stream to drain, counts the search-log rows, stops the servers (their shutdown ships anything
still buffered), drains once more and counts again.

It fails (exit 1, every reason printed) when, over the second half of the run (medians of the
first and last samples of that half, so one sample's noise does not decide):

- a process's RSS grew more than --max-rss-growth-mib AND more than --max-rss-growth-pct;
- a process's open file descriptors grew by more than --max-fd-growth;
- a worker was restarted (its pid changed) or a process died;
- a key shape without a TTL, or with a TTL beyond an hour, grew by more than --key-slack keys;
  a shape whose longest TTL is shorter than the time the traffic had run at the middle census
  (so its count had reached the steady state TTLs give) grew by more than --max-key-growth-pct
  plus --key-slack (shapes with a TTL in between are reported, not judged);
- the db's memory (sum of MEMORY USAGE) grew more than --max-redis-growth-pct plus
  --redis-slack-mib (the server's used_memory is shown, not judged: other dbs share it);
- the stream's backlog exceeded --max-stream-backlog entries in the second half, or did not
  return to at most --max-stream-end entries (and as many pending) within --drain-timeout s
  after the traffic;
- the search log lost rows: for every (endpoint, outcome, code) the rows must be at least the
  requests the gateway answered with that outcome, and per endpoint the surplus at most the
  requests sent without an answer (in flight when locust stopped); a 401 is answered but never
  logged (no account). Rows written only by the shutdown (not while running) fail too;
- the honest users' failure ratio exceeded --max-failure-ratio, or the p95/p99 of their
  lookups, decodes and attestations exceeded --p95-ms/--p99-ms; locust's own checks failed
  (an abuser never refused, a guessed password accepted...);
- a server or writer log has a Traceback, ERROR or CRITICAL line (lines containing a
  --log-note text are listed, not judged: by default the start-up finding that Redis persists
  nothing, true of a development Redis, while production's must).

A Redis process started less than the attestation iat leeway (60 s) ago refuses every
attestation (it cannot know which it accepted before it started: the replay window of
admit.lua), so against a young Redis the soak waits before the traffic starts.

Exit code 2: a prerequisite is missing (Redis, PostgreSQL, the db held by a test run). No VIN,
token or e-mail is printed or written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from gateway.config import Settings  # noqa: E402
from gateway.searchlog.options import GROUP  # noqa: E402
from loadtests.bench_lookup import _children, _cmdline  # noqa: E402
from loadtests.docs_section import load_average, replace_section  # noqa: E402
from tests.gateway.procs import BIN, free_port  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
LOCUST = Path(sys.executable).parent / "locust"
STREAM: str = Settings.model_fields["searchlog_stream"].default
# tests/conftest.py's lock: a test run holding a db has this key; the soak takes it too
LOCK_KEY = "vingw:test-run-lock"
LONG_TTL_S = 3600.0  # a key living longer than this is judged like one without a TTL
# request groups of the honest users whose percentiles are judged
LATENCY_GROUPS = ("/v1/lookups", "/v1/lookups [web]", "/v1/attestations [web]", "/v1/vins/decode")
LOG_ERRORS = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")
# error lines that are findings about the machine, not about the run: reported, not judged
# (the development Redis persists nothing; production's must, docs/searchlog.md)
LOG_NOTES = ("Redis is not durable",)
# attestations issued before a Redis process started (+ this leeway) are refused: a Redis
# younger than that refuses every attestation (admit.lua, replay window), so the soak waits
IAT_LEEWAY_S: int = Settings.model_fields["attestation_future_iat_leeway_s"].default


# ---------------------------------------------------------------- measurements


@dataclass
class Sample:
    t: float  # seconds since the traffic started
    traffic: bool  # taken while locust ran
    rss_kib: dict[str, int]
    fds: dict[str, int]
    keys: int
    keys_no_ttl: int
    used_memory: int
    xlen: int
    pending: int


@dataclass
class Shape:
    count: int = 0
    max_ttl_s: float | None = 0.0  # None: at least one key of the shape has no TTL
    bytes: int = 0


Census = dict[str, Shape]


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


_ID = re.compile(r"[0-9a-f]{6,}|\d+|[A-Za-z0-9_-]{16,}")


def shape_of(key: str) -> str:
    """A key with its variable parts (hash tags, ids, digests) replaced by ``*``."""
    key = re.sub(r"\{[^}]*\}", "{*}", key)
    return ":".join("*" if _ID.fullmatch(part) else part for part in key.split(":"))


def census(client: Any, exclude: frozenset[str]) -> Census:
    """Every key of the db by shape: count, longest remaining TTL, memory."""
    shapes: Census = {}
    batch: list[bytes] = []

    def flush() -> None:
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.pttl(key)
            pipe.memory_usage(key, samples=0)
        replies = pipe.execute()
        for i, key in enumerate(batch):
            pttl, size = replies[2 * i], replies[2 * i + 1]
            if pttl == -2:  # expired meanwhile
                continue
            shape = shapes.setdefault(shape_of(key.decode(errors="replace")), Shape())
            shape.count += 1
            shape.bytes += int(size or 0)
            if pttl == -1 or shape.max_ttl_s is None:
                shape.max_ttl_s = None
            else:
                shape.max_ttl_s = max(shape.max_ttl_s, pttl / 1000)
        batch.clear()

    for key in client.scan_iter(count=1000):
        if key.decode(errors="replace") in exclude:
            continue
        batch.append(key)
        if len(batch) >= 500:
            flush()
    if batch:
        flush()
    return shapes


# ---------------------------------------------------------------- judging (pure functions)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ends(values: list[float]) -> tuple[float, float]:
    """Medians of the first and last few values (up to 3 each, at most a third of them)."""
    k = max(1, min(3, len(values) // 3))
    return _median(values[:k]), _median(values[-k:])


def second_half(samples: list[Sample], mid: float) -> list[Sample]:
    return [s for s in samples if s.traffic and s.t >= mid]


def check_processes(
    samples: list[Sample], mid: float, args: argparse.Namespace
) -> tuple[list[str], list[list[str]]]:
    """RSS and fd growth per process over the second half of the traffic."""
    failed: list[str] = []
    rows: list[list[str]] = []
    half = second_half(samples, mid)
    roles = list(dict.fromkeys(r for s in samples for r in s.rss_kib))
    for role in roles:
        rss = [s.rss_kib[role] / 1024 for s in half if role in s.rss_kib]
        fds = [float(s.fds[role]) for s in half if role in s.fds]
        if len(rss) < 2 or len(fds) < 2:
            failed.append(f"{role}: too few samples in the second half ({len(rss)})")
            continue
        (r0, r1), (f0, f1) = ends(rss), ends(fds)
        grew, pct = r1 - r0, (r1 - r0) / r0 * 100 if r0 else 0.0
        peak = max(s.rss_kib[role] for s in samples if role in s.rss_kib) / 1024
        rows.append([role, f"{r0:.1f}", f"{r1:.1f}", f"{grew:+.1f} ({pct:+.1f} %)",
                     f"{peak:.1f}", f"{f0:.0f}", f"{f1:.0f}"])  # fmt: skip
        if grew > args.max_rss_growth_mib and pct > args.max_rss_growth_pct:
            failed.append(
                f"{role}: RSS grew {grew:.1f} MiB ({pct:.1f} %) over the second half "
                f"(limit {args.max_rss_growth_mib} MiB and {args.max_rss_growth_pct} %)"
            )
        if f1 - f0 > args.max_fd_growth:
            failed.append(
                f"{role}: open file descriptors grew {f0:.0f} -> {f1:.0f} over the second half "
                f"(limit +{args.max_fd_growth})"
            )
    return failed, rows


def check_keys(
    mid: Census, end: Census, plateau_s: float, args: argparse.Namespace
) -> tuple[list[str], list[list[str]]]:
    """Key shapes: those that outlive the run must not grow; those whose TTL had made them
    steady by the middle census may grow only within --max-key-growth-pct + --key-slack."""
    failed: list[str] = []
    rows: list[list[str]] = []
    for name in sorted(set(mid) | set(end), key=lambda n: -(end.get(n) or Shape()).count):
        a, b = mid.get(name, Shape()), end.get(name, Shape())
        ttls = [s.max_ttl_s for s in (a, b) if s.count]
        ttl = None if None in ttls else max(ttls, default=0.0)  # type: ignore[type-var]
        grew = b.count - a.count
        if ttl is None or ttl > LONG_TTL_S:
            verdict = "judged: must not grow"
            if grew > args.key_slack:
                failed.append(
                    f"Redis keys {name!r} ({'no TTL' if ttl is None else f'TTL {ttl:.0f} s'}) "
                    f"grew {a.count} -> {b.count} over the second half (slack {args.key_slack})"
                )
        elif ttl <= plateau_s:
            verdict = "judged: steady"
            allowed = a.count * (1 + args.max_key_growth_pct / 100) + args.key_slack
            if b.count > allowed:
                failed.append(
                    f"Redis keys {name!r} (TTL {ttl:.0f} s) grew {a.count} -> {b.count} over the "
                    f"second half, beyond what their TTL explains (limit {allowed:.0f})"
                )
        else:
            verdict = f"not judged: TTL > {plateau_s:.0f} s of traffic at the middle"
        shown = "none" if ttl is None else f"{ttl:.0f}"
        rows.append([name, str(a.count), str(b.count), shown, verdict])
    bytes_a = sum(s.bytes for s in mid.values())
    bytes_b = sum(s.bytes for s in end.values())
    allowed_b = bytes_a * (1 + args.max_redis_growth_pct / 100) + args.redis_slack_mib * 2**20
    if bytes_b > allowed_b:
        failed.append(
            f"Redis db memory grew {bytes_a / 2**20:.2f} -> {bytes_b / 2**20:.2f} MiB over the "
            f"second half (limit {allowed_b / 2**20:.2f} MiB)"
        )
    return failed, rows


def check_stream(
    samples: list[Sample], mid: float, drained: tuple[int, int, float], args: argparse.Namespace
) -> list[str]:
    failed = []
    half = second_half(samples, mid)
    backlog = max((s.xlen for s in half), default=0)
    if backlog > args.max_stream_backlog:
        failed.append(
            f"search-log stream backlog reached {backlog} entries in the second half "
            f"(limit {args.max_stream_backlog}): the writer does not keep up"
        )
    xlen, pending, waited = drained
    if xlen > args.max_stream_end or pending > args.max_stream_end:
        failed.append(
            f"search-log stream still holds {xlen} entries ({pending} pending) {waited:.0f} s "
            f"after the traffic (limit {args.max_stream_end})"
        )
    return failed


def answered_by_key(report: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    return Counter({(e, o, c): n for e, o, c, n in report.get("vin_answered", [])})


def check_searchlog(
    report: dict[str, Any],
    rows: Counter[tuple[str, str, str]],
    rows_live: Counter[tuple[str, str, str]] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Rows per (endpoint, outcome, code) against what the gateway answered (see the docstring)."""
    failed: list[str] = []
    table: list[list[str]] = []
    answered = answered_by_key(report)
    sent = Counter(report.get("vin_sent", {}))
    unlogged = Counter(report.get("vin_unlogged", {}))
    for key in sorted(set(answered) | set(rows)):
        endpoint, outcome, code = key
        table.append([endpoint, outcome, code or "-", str(answered[key]), str(rows[key])])
        if rows[key] < answered[key]:
            failed.append(
                f"search log lost rows: {endpoint} {outcome} {code or ''}: {rows[key]} rows for "
                f"{answered[key]} answered requests".replace("  ", " ")
            )
    for endpoint in sorted(set(sent) | {k[0] for k in rows}):
        n_rows = sum(n for k, n in rows.items() if k[0] == endpoint)
        n_answered = sum(n for k, n in answered.items() if k[0] == endpoint)
        in_flight = sent[endpoint] - n_answered - unlogged[endpoint]
        if n_rows - n_answered > max(0, in_flight):
            failed.append(
                f"search log: {endpoint}: {n_rows} rows, more than the {n_answered} answered "
                f"requests plus {max(0, in_flight)} sent without an answer"
            )
    if rows_live is not None:
        late = sum(rows.values()) - sum(rows_live.values())
        if late > 0:
            failed.append(
                f"search log: {late} rows were written only by the shutdown, not while running"
            )
    return failed, table


def check_users(
    report: dict[str, Any], locust_rc: int | None, args: argparse.Namespace
) -> tuple[list[str], list[list[str]]]:
    failed: list[str] = []
    rows: list[list[str]] = []
    honest = [g for g in report.get("groups", []) if g["kind"] == "honest"]
    requests = sum(g["requests"] for g in honest)
    failures = sum(g["failures"] for g in honest)
    for g in report.get("groups", []):
        rows.append([g["kind"], f"{g['method']} {g['name']}", str(g["requests"]),
                     str(g["failures"]), f"{g['median_ms']:.0f}", f"{g['p95_ms']:.0f}",
                     f"{g['p99_ms']:.0f}", f"{g['max_ms']:.0f}"])  # fmt: skip
    if requests == 0:
        failed.append("the honest users made no request")
    elif failures / requests > args.max_failure_ratio:
        failed.append(
            f"honest users: {failures} of {requests} requests failed "
            f"({failures / requests:.2%} > {args.max_failure_ratio:.2%})"
        )
    for g in honest:
        if g["name"] in LATENCY_GROUPS and g["requests"]:
            for q, limit in (("p95", args.p95_ms), ("p99", args.p99_ms)):
                if g[f"{q}_ms"] > limit:
                    failed.append(f"honest {g['name']}: {q} {g[f'{q}_ms']:.0f} ms > {limit:.0f} ms")
    if not any(g["name"] == "/v1/lookups" and g["requests"] for g in honest):
        failed.append("no workshop lookup was made")
    failed.extend(f"locust: {p}" for p in report.get("problems", []))
    if locust_rc not in (0, None) and not report.get("problems"):
        failed.append(f"locust exited with code {locust_rc}")
    return failed, rows


def check_logs(
    logs: dict[str, Path], notes: tuple[str, ...] = LOG_NOTES
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Error lines of the server and writer logs: failures, all of them by role, and the
    distinct lines matching ``notes`` (machine findings, reported but not judged)."""
    failed: list[str] = []
    found: dict[str, list[str]] = {}
    noted: list[str] = []
    for role, path in logs.items():
        text = path.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if LOG_ERRORS.search(ln)]
        judged = [ln for ln in lines if not any(n in ln for n in notes)]
        for ln in lines:
            finding = ln.split(" ", 2)[-1][:300]  # without the time stamp
            if ln not in judged and finding not in noted:
                noted.append(finding)
        if lines:
            found[role] = lines
        if judged:
            failed.append(f"{role} log: {len(judged)} error line(s), first: {judged[0][:200]}")
    return failed, found, noted


# ---------------------------------------------------------------- processes and stores


def server_env(work: Path, args: argparse.Namespace, accounts: str, log: str) -> dict[str, str]:
    return {
        "VINGW_DATA_DIR": str(work / "var"),
        "VINGW_REDIS_URL": args.redis_url,
        "VINGW_DATABASE_URL": accounts,
        "VINGW_LOG_DATABASE_URL": log,
        "VINGW_SEARCHLOG_CONSUMER": "false",
        "VINGW_TRUSTED_PROXIES": "127.0.0.1",
        "VINGW_ACCESS_LOG_LEVEL": "WARNING",
        "VINGW_ARGON2_TIME_COST": "1",
        "VINGW_ARGON2_MEMORY_KIB": "1024",
        "VINGW_ARGON2_PARALLELISM": "1",
    }


def _env(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}
    full.update(env)
    return full


def gateway(cmd: list[str], env: dict[str, str], timeout: float = 120) -> None:
    done = subprocess.run([str(BIN), *cmd], env=_env(env), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"vin-gateway {cmd[0]} failed:\n{done.stderr}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Unavailable(RuntimeError):
    """A prerequisite is missing (exit code 2)."""


@contextlib.contextmanager
def redis_db(args: argparse.Namespace) -> Iterator[Any]:
    """The db of --redis-url, flushed before and after, with the test-run lock taken."""
    import redis

    client = redis.Redis.from_url(args.redis_url, socket_timeout=10)
    try:
        holder = client.get(LOCK_KEY)
    except redis.RedisError as exc:
        raise Unavailable(f"Redis at --redis-url is not reachable ({type(exc).__name__})") from exc
    if holder is not None and not holder.startswith(b"soak-"):
        raise Unavailable("the Redis db of --redis-url is held by a test run: choose another")
    client.flushdb()
    client.set(LOCK_KEY, f"soak-{os.getpid()}", ex=args.duration + 3600)
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@contextlib.contextmanager
def postgres_dbs(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """Two fresh databases (accounts, search log) on --postgres-url, dropped at the end."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(args.postgres_url)
    admin = admin.set(database=admin.database or "postgres")
    conninfo = admin.render_as_string(hide_password=False)
    tag = secrets.token_hex(4)
    names = [f"vingw_soak_{tag}_accounts", f"vingw_soak_{tag}_searchlog"]
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        raise Unavailable(f"PostgreSQL at --postgres-url is not reachable ({exc})") from exc
    with conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield tuple(admin.set(database=n).render_as_string(hide_password=False) for n in names)  # type: ignore[misc]
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def search_rows(url: str) -> Counter[tuple[str, str, str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT endpoint, outcome, coalesce(code, ''), count(*) FROM search_event "
            "GROUP BY 1, 2, 3"
        ).fetchall()
    return Counter({(e, o, c): int(n) for e, o, c, n in found})


@dataclass
class Servers:
    base: str
    master: subprocess.Popen[bytes]
    writer: subprocess.Popen[bytes]
    workers: list[int]
    logs: dict[str, Path]

    def roles(self) -> dict[str, int]:
        found = {"master": self.master.pid}
        found.update({f"worker {i + 1}": pid for i, pid in enumerate(self.workers)})
        found["writer"] = self.writer.pid
        return found

    def current_workers(self) -> list[int]:
        return sorted(
            p for p in _children(self.master.pid) if any("spawn_main" in a for a in _cmdline(p))
        )


@contextlib.contextmanager
def servers(env: dict[str, str], work: Path, workers: int) -> Iterator[Servers]:
    """`vin-gateway serve --workers N` and one `vin-gateway searchlog-writer`, logs to files."""
    port = free_port()
    logs = {"server": work / "server.log", "writer": work / "writer.log"}
    cmd = [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with logs["server"].open("wb") as out:
        master = subprocess.Popen(cmd, env=_env(env), stdout=out, stderr=subprocess.STDOUT)
    with logs["writer"].open("wb") as out:
        writer = subprocess.Popen([str(BIN), "searchlog-writer"], env=_env(env), stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            for name, proc in (("server", master), ("writer", writer)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited early:\n{logs[name].read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not become ready in 60 s")
            time.sleep(0.2)
        found = Servers(base, master, writer, [], logs)
        while len(found.current_workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        found.workers = found.current_workers()
        if len(found.workers) != workers:
            raise RuntimeError(f"expected {workers} workers, found {len(found.workers)}")
        for _ in range(20):  # every worker up and serving before the first sample
            httpx.get(base + "/readyz", timeout=5)
        yield found
    finally:
        stop(master)
        stop(writer)


def take_sample(
    t: float, traffic: bool, srv: Servers, client: Any, db: int, failed: list[str]
) -> Sample:
    rss: dict[str, int] = {}
    fds: dict[str, int] = {}
    for role, pid in srv.roles().items():
        r, f = rss_kib(pid), fd_count(pid)
        if r is None or f is None:
            msg = f"{role} (pid {pid}) is gone"
            if msg not in failed:
                failed.append(msg)
            continue
        rss[role], fds[role] = r, f
    now = srv.current_workers()
    if now != srv.workers:
        msg = f"workers restarted: pids {srv.workers} -> {now}"
        if msg not in failed:
            failed.append(msg)
    info = client.info("keyspace").get(f"db{db}", {})
    keys, expires = int(info.get("keys", 0)), int(info.get("expires", 0))
    pending = pending_of(client)
    return Sample(
        t=round(t, 1),
        traffic=traffic,
        rss_kib=rss,
        fds=fds,
        keys=int(client.dbsize()),
        keys_no_ttl=keys - expires,
        used_memory=int(client.info("memory")["used_memory"]),
        xlen=queued(client),
        pending=pending,
    )


# ---------------------------------------------------------------- the run


@dataclass
class Result:
    args: argparse.Namespace
    mix: dict[str, int]
    samples: list[Sample] = field(default_factory=list)
    census_mid: Census = field(default_factory=dict)
    mid_census: bool = False  # taken
    census_end: Census = field(default_factory=dict)
    mid_t: float = 0.0
    traffic_s: float = 0.0
    plateau_s: float = 0.0
    drained: tuple[int, int, float] = (0, 0, 0.0)
    report: dict[str, Any] = field(default_factory=dict)
    rows: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rows_live: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    locust_rc: int | None = None
    failed: list[str] = field(default_factory=list)
    tables: dict[str, list[list[str]]] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def user_mix(args: argparse.Namespace) -> dict[str, int]:
    abusers = max(1, args.users // 25)
    mix = {
        "web users": round(args.users * 0.3) if args.web_users is None else args.web_users,
        "scrapers": abusers if args.scrapers is None else args.scrapers,
        "VIN guessers": abusers if args.vin_guessers is None else args.vin_guessers,
        "login guessers": abusers if args.login_guessers is None else args.login_guessers,
    }
    mix = {"workshops": args.users - sum(mix.values()), **mix}
    return mix


def locust_cmd(base: str, work: Path, mix: dict[str, int], args: argparse.Namespace) -> list[str]:
    return [
        str(LOCUST), "-f", str(HERE / "locustfile.py"), "--headless",
        "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{args.duration}s",
        "--stop-timeout", "10", "--only-summary", "--host", base, "--loglevel", "INFO",
        "--csv", str(work / "locust"), "--report-json", str(work / "report.json"),
        "--web-users", str(mix["web users"]), "--scrapers", str(mix["scrapers"]),
        "--vin-guessers", str(mix["VIN guessers"]),
        "--login-guessers", str(mix["login guessers"]),
        "--abuser-retry-s", str(args.abuser_retry_s), "--p95-ms", str(args.p95_ms),
    ]  # fmt: skip


def soak(args: argparse.Namespace) -> Result:
    res = Result(args, user_mix(args))
    work = Path(tempfile.mkdtemp(prefix="vingw-soak-"))
    try:
        with redis_db(args) as client, postgres_dbs(args) as (accounts_url, log_url):
            db = int(client.connection_pool.connection_kwargs.get("db", 0))
            res.info = machine(client, accounts_url)
            exclude = frozenset({LOCK_KEY, STREAM})
            env = server_env(work, args, accounts_url, log_url)
            gateway(["migrate"], env)
            with servers(env, work, args.workers) as srv:
                print(f"soak: gateway {srv.base}, pids {srv.roles()}; users {res.mix}", flush=True)
                wait_for_replay_window(client)
                log_path = work / "locust.log"
                with log_path.open("wb") as out:
                    locust = subprocess.Popen(locust_cmd(srv.base, work, res.mix, args),
                                              stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
                t0 = time.monotonic()
                res.mid_t = args.duration / 2
                next_sample = 0.0
                spawn_s = args.users / args.spawn_rate
                try:
                    while locust.poll() is None:
                        t = time.monotonic() - t0
                        if t >= next_sample:
                            res.samples.append(take_sample(t, True, srv, client, db, res.failed))
                            next_sample += args.interval
                            progress(res.samples[-1], args)
                        if not res.mid_census and t >= res.mid_t:
                            res.census_mid, res.mid_census = census(client, exclude), True
                            res.mid_t, res.plateau_s = t, max(0.0, t - spawn_s)
                        if srv.master.poll() is not None or srv.writer.poll() is not None:
                            res.failed.append("the server or the writer exited during the run")
                            break
                        if t > args.duration + 120:
                            res.failed.append("locust did not stop 120 s after --duration")
                            break
                        time.sleep(0.25)
                finally:
                    if locust.poll() is None:
                        locust.send_signal(signal.SIGINT)
                        try:
                            locust.wait(30)
                        except subprocess.TimeoutExpired:
                            locust.kill()
                            locust.wait()
                res.locust_rc = locust.returncode
                res.traffic_s = time.monotonic() - t0
                res.samples.append(take_sample(res.traffic_s, True, srv, client, db, res.failed))
                res.census_end = census(client, exclude)
                res.drained = drain_wait(client, args)
                res.samples.append(
                    take_sample(time.monotonic() - t0, False, srv, client, db, res.failed)
                )
                res.rows_live = search_rows(log_url)
            # servers stopped (their shutdown ships what they buffered): drain what is left
            gateway(["searchlog-writer", "--drain", "--timeout", "60"], env)
            res.rows = search_rows(log_url)
            report_file = work / "report.json"
            if report_file.exists():
                res.report = json.loads(report_file.read_text())
            else:
                res.failed.append("locust wrote no report:\n" + log_path.read_text()[-3000:])
            judge(res, srv.logs, log_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res


def wait_for_replay_window(client: Any) -> None:
    """A Redis process younger than the iat leeway refuses every attestation (it cannot know
    which it accepted before it started): wait until it is old enough."""
    uptime = int(client.info("server")["uptime_in_seconds"])
    if uptime < IAT_LEEWAY_S + 2:
        wait = IAT_LEEWAY_S + 2 - uptime
        print(f"soak: Redis started {uptime} s ago; waiting {wait} s until attestations issued "
              "now are outside its replay window", flush=True)  # fmt: skip
        time.sleep(wait)


def streams(client: Any) -> list[bytes]:
    """The search-log queue's streams: the sharded ``<stream>:{n}`` and the unsharded one."""
    return sorted(client.scan_iter(match=STREAM + "*", _type="stream"))


def queued(client: Any) -> int:
    return sum(int(client.xlen(key)) for key in streams(client))


def pending_of(client: Any) -> int:
    total = 0
    for key in streams(client):
        with contextlib.suppress(Exception):  # no group: nothing pending
            total += int(client.xpending(key, GROUP)["pending"])
    return total


def drain_wait(client: Any, args: argparse.Namespace) -> tuple[int, int, float]:
    """Wait until the stream holds at most --max-stream-end entries (and as many pending)."""
    started = time.monotonic()
    while True:
        xlen, pending = queued(client), pending_of(client)
        waited = time.monotonic() - started
        if (xlen <= args.max_stream_end and pending <= args.max_stream_end) or (
            waited >= args.drain_timeout
        ):
            return xlen, pending, waited
        time.sleep(0.5)


def progress(s: Sample, args: argparse.Namespace) -> None:
    if args.quiet:
        return
    rss = ", ".join(f"{role} {kib / 1024:.0f}" for role, kib in s.rss_kib.items())
    print(f"  t={s.t:6.0f} s  RSS MiB {rss}  fds {sum(s.fds.values())}  keys {s.keys} "
          f"(no TTL {s.keys_no_ttl})  used_memory {s.used_memory / 2**20:.1f} MiB  "
          f"stream {s.xlen} (pending {s.pending})", flush=True)  # fmt: skip


def judge(res: Result, logs: dict[str, Path], locust_log: Path) -> None:
    args = res.args
    failed = res.failed
    f, res.tables["processes"] = check_processes(res.samples, res.mid_t, args)
    failed += f
    if res.mid_census:
        f, res.tables["keys"] = check_keys(res.census_mid, res.census_end, res.plateau_s, args)
        failed += f
    else:
        failed.append("no census at the middle of the run (did the traffic stop early?)")
    failed += check_stream(res.samples, res.mid_t, res.drained, args)
    if res.report:
        f, res.tables["searchlog"] = check_searchlog(res.report, res.rows, res.rows_live)
        failed += f
        f, res.tables["users"] = check_users(res.report, res.locust_rc, args)
        failed += f
    f, found, res.notes = check_logs(logs, tuple(args.log_note))
    failed += f
    for role, lines in found.items():
        judged = [ln for ln in lines if not any(n in ln for n in args.log_note)]
        for line in judged[:5]:
            print(f"  {role}: {line[:300]}")
    for line in locust_log.read_text(errors="replace").splitlines():
        if "vin-gateway-locust" in line or "FAIL" in line:
            print("  locust: " + line.split("/INFO/", 1)[-1].split("/ERROR/", 1)[-1][:400])


# ---------------------------------------------------------------- output


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


HEADS = {
    "processes": ["process", "RSS MiB (2nd half start)", "RSS MiB (end)", "growth", "peak MiB",
                  "fds (2nd half start)", "fds (end)"],
    "keys": ["key shape", "keys (middle)", "keys (end)", "longest TTL s", "verdict"],
    "searchlog": ["endpoint", "outcome", "code", "answered", "rows"],
    "users": ["kind", "group", "requests", "failures", "median ms", "p95 ms", "p99 ms", "max ms"],
}  # fmt: skip


def summary(res: Result) -> list[str]:
    """The result as Markdown lines (printed, and written by --write-docs)."""
    s = res.samples
    load = [x for x in s if x.traffic]
    sent = sum(res.report.get("vin_sent", {}).values())
    answered = sum(n for *_, n in res.report.get("vin_answered", []))
    xlen, pending, waited = res.drained
    lines = [
        f"- traffic {res.traffic_s:.0f} s; users: "
        + ", ".join(f"{n} {k}" for k, n in res.mix.items()),
        f"- {len(s)} samples every {res.args.interval} s; second half from t = "
        f"{res.mid_t:.0f} s; middle census after {res.plateau_s:.0f} s of full traffic",
        f"- Redis db: keys {min((x.keys for x in load), default=0)}-"
        f"{max((x.keys for x in load), default=0)} during the traffic (no TTL: "
        f"{max((x.keys_no_ttl for x in load), default=0)} at most), "
        f"{sum(v.bytes for v in res.census_mid.values()) / 2**20:.2f} MiB at the middle, "
        f"{sum(v.bytes for v in res.census_end.values()) / 2**20:.2f} MiB at the end; server "
        f"used_memory {min((x.used_memory for x in load), default=0) / 2**20:.1f}-"
        f"{max((x.used_memory for x in load), default=0) / 2**20:.1f} MiB (all dbs)",
        f"- search-log stream: at most {max((x.xlen for x in load), default=0)} entries "
        f"(pending {max((x.pending for x in load), default=0)}) during the traffic; {xlen} "
        f"entries, {pending} pending {waited:.1f} s after it",
        f"- VIN requests: {sent} sent, {answered} answered and logged, "
        f"{sum(res.report.get('vin_unlogged', {}).values())} answered 401 (never logged); "
        f"search-log rows {sum(res.rows_live.values())} while running, "
        f"{sum(res.rows.values())} after the shutdown",
    ]
    for kind, key in (("scrapers", "scrapers"), ("VIN guessers", "vin_guessers")):
        r = res.report.get(key) or {}
        if r.get("started"):
            walks = [b[0] for b in r["blocked"]]
            policies = sorted({b[1] for b in r["blocked"]})
            lines.append(f"- {kind}: {r['started']} started, blocked after {walks} queries "
                         f"(policies {policies}), answers {r['codes']}")  # fmt: skip
    r = res.report.get("login_guessers") or {}
    if r.get("started"):
        lines.append(f"- login guessers: {r['started']} started, first 429 after {r['refused']} "
                     f"attempts, answers {r['codes']}")  # fmt: skip
    for name, rows in res.tables.items():
        lines += ["", *table(HEADS[name], rows)]
    if res.notes:
        lines += ["", "Noted in the logs, not judged (findings about the machine):"]
        lines += [f"- {n}" for n in res.notes]
    lines += ["", "Verdict: " + ("no growth, no loss." if not res.failed else "FAILED:")]
    lines += [f"- {f}" for f in res.failed]
    return lines


def machine(client: Any, pg_url: str) -> dict[str, str]:
    import psycopg

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), "unknown")  # fmt: skip
    kib = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal")), 0)  # fmt: skip
    versions = []
    for dist in ("fastapi", "uvicorn", "redis", "psycopg", "locust"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    with psycopg.connect(pg_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {kib / 2**20:.1f} GiB memory",
        "software": f"Python {platform.python_version()}, Redis "
        f"{client.info('server')['redis_version']}, PostgreSQL {pg}; " + ", ".join(versions),
    }


def write_docs(path: Path, res: Result, args: argparse.Namespace) -> None:
    md = [
        BEGIN,
        "",
        f"Measured {args.started:%Y-%m-%d %H:%M} UTC with",
        "",
        "```sh",
        args.command,
        "```",
        "",
        f"- machine: {res.info.get('machine')}; load average (1/5/15 min) {args.load_before} "
        f"before, {args.load_after} after",
        f"- {res.info.get('software')}",
        *summary(res),
        "",
        END,
    ]
    intro = (
        "## Soak\n\nWritten by `loadtests/soak.py --write-docs`; nothing between the "
        "markers is edited by hand.\n\n"
    )
    replace_section(path, BEGIN, END, md, intro)


# ---------------------------------------------------------------- main


def seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)([smh]?)", text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: use seconds, or a number with s, m or h")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", type=seconds, default=600, help="traffic time (600; 90s, 10m)")
    p.add_argument("--users", type=int, default=50, help="simulated users in all (50)")
    p.add_argument("--spawn-rate", type=float, default=5.0, help="users started per second (5)")
    p.add_argument("--web-users", type=int, help="web users (default 30 %% of --users)")
    for kind in ("scrapers", "vin-guessers", "login-guessers"):
        p.add_argument(f"--{kind}", type=int, help=f"{kind} (default --users // 25, at least 1)")
    p.add_argument("--workers", type=int, default=2, help="gateway workers (2)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples (10)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/13",
                   help="a Redis db of the soak's own: FLUSHED before and after")  # fmt: skip
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432",
                   help="PostgreSQL (admin): makes and drops two vingw_soak_* dbs")  # fmt: skip
    p.add_argument("--abuser-retry-s", type=float, default=1.0,
                   help="seconds between a blocked abuser's retries (1)")  # fmt: skip
    g = p.add_argument_group("thresholds")
    g.add_argument("--max-rss-growth-mib", type=float, default=10.0)
    g.add_argument("--max-rss-growth-pct", type=float, default=10.0)
    g.add_argument("--max-fd-growth", type=int, default=8)
    g.add_argument("--max-key-growth-pct", type=float, default=25.0)
    g.add_argument("--key-slack", type=int, default=10)
    g.add_argument("--max-redis-growth-pct", type=float, default=25.0)
    g.add_argument("--redis-slack-mib", type=float, default=1.0)
    g.add_argument("--max-stream-backlog", type=int, default=5000)
    g.add_argument("--max-stream-end", type=int, default=0)
    g.add_argument("--drain-timeout", type=float, default=30.0)
    g.add_argument("--max-failure-ratio", type=float, default=0.01)
    g.add_argument("--p95-ms", type=float, default=500.0)
    g.add_argument("--p99-ms", type=float, default=1500.0)
    p.add_argument("--write-docs", action="store_true",
                   help=f"write the Soak section of {DOCS.relative_to(ROOT)}")  # fmt: skip
    p.add_argument("--docs", type=Path, default=DOCS, help=argparse.SUPPRESS)
    p.add_argument("--log-note", action="append", default=list(LOG_NOTES), metavar="TEXT",
                   help="log error lines with TEXT: noted, not judged (repeatable)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no line per sample")
    args = p.parse_args(argv)
    mix = user_mix(args)
    if mix["workshops"] < 1 or min(mix.values()) < 0:
        p.error(f"--users {args.users} leaves no workshop for this mix: {mix}")
    if args.duration < 10 or args.interval <= 0:
        p.error("--duration must be at least 10 s and --interval positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.started = datetime.now(UTC)
    args.command = shlex.join([".venv/bin/python", "loadtests/soak.py",
                               *(sys.argv[1:] if argv is None else argv)])  # fmt: skip
    args.load_before = load_average()
    print(f"soak: {args.duration} s, {args.users} users, {args.workers} workers, samples every "
          f"{args.interval} s; load average {args.load_before}", flush=True)  # fmt: skip
    try:
        res = soak(args)
    except Unavailable as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    args.load_after = load_average()
    print()
    for line in summary(res):
        print(line)
    if args.write_docs:
        write_docs(args.docs, res, args)
        print(f"wrote the Soak section of {args.docs}")
    return 1 if res.failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("soak: interrupted (servers stopped, databases dropped)", file=sys.stderr)
        raise SystemExit(130) from None
