"""Full attested lookup path vs. a bare FastAPI endpoint, interleaved, over a matrix of cells.

    .venv/bin/python loadtests/bench_lookup.py [--cells 1,2,...] [--duration 10] [--reps 3]
        [--connections 16] [--quick] [--profile DIR] [--write-docs]

Needs `wrk` (Debian: apt-get install wrk), Redis on 127.0.0.1:6379 (db 14, flushed) and, for
the postgres cells, PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth; the bench creates
two databases per run and drops them). One load generator: wrk, one thread, --latency.

A cell is (attestation algorithm, workers, accounts, stores). For each cell both servers run
side by side with the same uvicorn and worker count: the bare endpoint (loadtests/bare_app.py)
and `vin-gateway serve` in the production layout (Redis, VINGW_SEARCHLOG_CONSUMER=false on the
workers plus one `vin-gateway searchlog-writer`). After a 1 s warm-up of each, wrk runs bare,
full, bare, full, ... (--reps each, --duration each), so background load falls on both alike.
The gateway path per request: API-key authentication, attestation verification, replay check
+ quota (one Lua round trip), VIN decode, catalogue, search-log enqueue. Every request carries
a fresh attestation, pre-signed before each run (one per request, as clients must); the flood,
guessing, distinct and sequential limits are raised for the benchmark accounts so none refuses,
but every policy still runs in the script. Accounts are made through the HTTP API (register,
token, attestation key, API key), Argon2 at minimal cost.

Per cell: requests/s (median and range), server CPU per request (utime+stime of the serving
processes from /proc: the uvicorn worker(s); the search-log writer on its own line), p50/p99
latency from wrk, non-2xx, the ratio full/bare of the medians; for --openloop cells a
fixed-rate run at 70 % of the full path's median (loadtests/openloop.py, latency from each
request's scheduled time); and the search-log rows written against the requests answered.
Exit code 1 when a target is missed (printed at the end). No VIN or token is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from loadtests.docs_section import load_average, replace_section  # noqa: E402
from loadtests.public_vins import PUBLIC_VINS  # noqa: E402
from tests.gateway import signing  # noqa: E402
from tests.gateway.procs import BIN, running, workshop  # noqa: E402

VINS = PUBLIC_VINS
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_lookup:begin -->", "<!-- bench_lookup:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
WARMUP_S = 1
OPENLOOP_FRACTION = 0.70

# targets (the issue's)
MIN_RATIO_ES256 = 0.40
MIN_RATIO_HS256 = 0.50
MIN_SCALING_2W = 1.7
MAX_OPENLOOP_P99_MS = 25.0


@dataclass(frozen=True)
class Cell:
    number: int
    alg: str
    workers: int
    accounts: int  # 1, or the "many accounts" count (--accounts)
    store: str  # "sqlite" or "postgres" (both with Redis)

    def label(self, many: int) -> str:
        n = many if self.accounts > 1 else 1
        acc = f"{n} account" + ("s" if n > 1 else "")
        wk = f"{self.workers} worker" + ("s" if self.workers > 1 else "")
        return f"{self.alg}, {wk}, {acc}, {self.store}+redis"


MANY = 1000
CELLS = {
    1: Cell(1, "ES256", 1, 1, "sqlite"),
    2: Cell(2, "RS256", 1, 1, "sqlite"),
    3: Cell(3, "HS256", 1, 1, "sqlite"),
    4: Cell(4, "ES256", 1, MANY, "sqlite"),
    5: Cell(5, "ES256", 2, 1, "sqlite"),
    6: Cell(6, "ES256", 1, 1, "postgres"),
    7: Cell(7, "ES256", 1, MANY, "postgres"),
    8: Cell(8, "ES256", 2, MANY, "postgres"),
}
# two-worker cell -> the one-worker cell it is compared with
SCALING = {5: 1, 8: 7}

WRK_SCRIPT = r"""
local lines = {}
sent = 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  for line in io.lines(args[1]) do table.insert(lines, line) end
end
request = function()
  sent = sent + 1
  local line = lines[(sent - 1) % #lines + 1]
  local a = line:find("\t")
  local b = line:find("\t", a + 1)
  local key, token, vin = line:sub(1, a - 1), line:sub(a + 1, b - 1), line:sub(b + 1)
  local headers = {["Content-Type"] = "application/json"}
  if key ~= "-" then
    headers["Authorization"] = "Bearer " .. key
    headers["VIN-Attestation"] = token
  end
  return wrk.format("POST", "/v1/lookups", headers, '{"vin": "' .. vin .. '"}')
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("sent") end
  io.write(string.format("sent: %d\n", n))
end
"""


# ---------------------------------------------------------------- measurements


@dataclass
class Run:
    rps: float
    requests: int
    sent: int
    non_2xx: int
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_us: float  # serving processes, per request
    writer_cpu_us: float | None = None
    lines: int = 0  # distinct requests prepared (tokens)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    def grab(pattern: str, default: str | None = None) -> str:
        m = re.search(pattern, out)
        if m is None:
            if default is None:
                raise RuntimeError(f"wrk output without {pattern!r}:\n{out}")
            return default
        return m.group(1)

    socket = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(grab(r"Requests/sec:\s+([\d.]+)")),
        "requests": int(grab(r"(\d+) requests in")),
        "sent": int(grab(r"sent: (\d+)")),
        "non_2xx": int(grab(r"Non-2xx or 3xx responses:\s+(\d+)", "0")),
        "errors": sum(int(g) for g in socket.groups()) if socket else 0,
        "p50_ms": _ms(grab(r"\n\s+50%\s+(\S+)")),
        "p99_ms": _ms(grab(r"\n\s+99%\s+(\S+)")),
    }


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total


def _children(ppid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def serving_pids(base: str, workers: int) -> list[int]:
    """The processes answering ``base``: the uvicorn worker children of the server we started
    (its master), or the master itself when it serves alone (one worker)."""
    port = base.rsplit(":", 1)[1]
    masters = [p for p in _children(os.getpid()) if port in _cmdline(p)]
    if len(masters) != 1:
        raise RuntimeError(f"cannot find the server on port {port}")
    master = masters[0]
    if workers == 1:
        return [master]
    deadline = time.monotonic() + 20
    while True:
        kids = [p for p in _children(master) if any("spawn_main" in a for a in _cmdline(p))]
        if len(kids) >= workers or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if len(kids) != workers:
        raise RuntimeError(f"expected {workers} workers under the server, found {len(kids)}")
    # every worker up and serving before measuring
    for _ in range(40):
        httpx.get(base + "/healthz", timeout=2)
    return kids


def run_wrk(
    base: str,
    lines_file: Path,
    duration: float,
    args: argparse.Namespace,
    pids: list[int],
    writer_pid: int | None = None,
) -> Run:
    script = lines_file.parent / "bench.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{duration}s", "--latency", "-s",
           str(script), base, "--", str(lines_file)]  # fmt: skip
    before = cpu_ticks(pids)
    before_w = cpu_ticks([writer_pid]) if writer_pid else 0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = cpu_ticks(pids)
    after_w = cpu_ticks([writer_pid]) if writer_pid else 0
    w = parse_wrk(out)
    per = 1e6 / CLK_TCK / max(1, w["requests"])
    return Run(
        **w,
        cpu_us=(after - before) * per,
        writer_cpu_us=(after_w - before_w) * per if writer_pid else None,
        lines=sum(1 for _ in lines_file.open()),
    )


# ---------------------------------------------------------------- process helpers


@contextlib.contextmanager
def background(cmd: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process (the search-log writer, py-spy) stopped with SIGTERM, then SIGKILL, at exit."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}
    full_env.update(env)
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def gateway(cmd: list[str], env: dict[str, str], *, check: bool = True) -> str:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}
    full_env.update(env)
    done = subprocess.run([str(BIN), *cmd], env=full_env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"vin-gateway {cmd[0]} failed:\n{done.stderr}")
    return done.stdout


def profiler(pid: int, duration: float, out: Path) -> contextlib.AbstractContextManager[Any]:
    """py-spy attached to the gateway worker ``pid`` for one run (raw collapsed stacks)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    cmd = [spy, "record", "--pid", str(pid), "-r", "250", "-d", str(int(duration) + 1),
           "-f", "raw", "-o", str(out), "--nonblocking"]  # fmt: skip
    return background(cmd, {})


# ---------------------------------------------------------------- stores and accounts


@dataclass
class Store:
    kind: str
    work: Path
    env: dict[str, str]
    rows: Callable[[], int]
    accounts: list[dict[str, Any]] = field(default_factory=list)
    rsa: dict[str, Any] | None = None


def base_env(data_dir: Path, redis_url: str) -> dict[str, str]:
    return {
        "VINGW_DATA_DIR": str(data_dir),
        "VINGW_REDIS_URL": redis_url,
        "VINGW_SEARCHLOG_CONSUMER": "false",
        "VINGW_LIMIT_VIN_BURST": "1000000000",
        "VINGW_LIMIT_VIN_PER_S": "1000000000",
        # every policy still runs in the script; none may refuse the benchmark accounts
        "VINGW_LIMIT_SCORE_THRESHOLD": "1000000000",
        "VINGW_LIMIT_DISTINCT_MAX": "1000000000",
        "VINGW_LIMIT_SEQ_THRESHOLD": "1000000000",
        # the setup registers and logs in up to 1000 accounts from 127.0.0.1
        "VINGW_LIMIT_IP_BURST": "1000000",
        "VINGW_LIMIT_IP_PER_S": "1000000",
        "VINGW_ACCESS_LOG_LEVEL": "WARNING",
        "VINGW_ARGON2_TIME_COST": "1",
        "VINGW_ARGON2_MEMORY_KIB": "1024",
        "VINGW_ARGON2_PARALLELISM": "1",
    }


@contextlib.contextmanager
def make_store(kind: str, work: Path, args: argparse.Namespace) -> Iterator[Store]:
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    data_dir = work / f"var-{kind}"
    env = base_env(data_dir, args.redis_url)
    if kind == "sqlite":
        path = data_dir / "searchlog.sqlite3"

        def rows() -> int:
            with contextlib.closing(sqlite3.connect(path)) as db:
                return int(db.execute("SELECT count(*) FROM search_event").fetchone()[0])

        try:
            yield Store(kind, work, env, rows)
        finally:
            redis.Redis.from_url(args.redis_url).flushdb()
        return

    import psycopg

    tag = secrets.token_hex(4)
    names = [f"vingw_bench_{tag}_accounts", f"vingw_bench_{tag}_searchlog"]
    admin = args.postgres_url.rstrip("/")
    with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env["VINGW_DATABASE_URL"] = f"{admin}/{names[0]}"
        env["VINGW_LOG_DATABASE_URL"] = f"{admin}/{names[1]}"
        gateway(["migrate"], env)

        def pg_rows() -> int:
            with psycopg.connect(f"{admin}/{names[1]}") as c:
                return int(c.execute("SELECT count(*) FROM search_event").fetchone()[0])  # type: ignore[index]

        yield Store(kind, work, env, pg_rows)
    finally:
        redis.Redis.from_url(args.redis_url).flushdb()
        with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_up_accounts(store: Store, count: int, rsa: bool) -> None:
    """Accounts through the HTTP API, as a newcomer makes them (tests/gateway/procs.workshop)."""
    have = len(store.accounts)
    if count <= have and (store.rsa is not None or not rsa):
        return
    started = time.monotonic()
    with running(["serve", "--workers", "2"], store.env) as (base, _):

        def one(kind: str) -> dict[str, Any]:
            with httpx.Client(base_url=base, timeout=30) as client:
                return workshop(client, kind=kind, api_key=True)

        with ThreadPoolExecutor(6) as pool:
            store.accounts.extend(pool.map(one, ["ec"] * max(0, count - have)))
        if rsa and store.rsa is None:
            store.rsa = one("rsa")
    print(
        f"  setup: {len(store.accounts)} ES256 account(s)"
        + (" + 1 RS256 account" if store.rsa else "")
        + f" through the HTTP API in {time.monotonic() - started:.1f} s",
        flush=True,
    )


def gateway_signer(data_dir: Path, account_id: str) -> Callable[[str], str]:
    """Attestations exactly as POST /v1/attestations issues them (HS256, kid gw-att-1)."""
    import base64
    import hashlib
    import hmac

    secret = base64.urlsafe_b64decode(
        (data_dir / "secrets" / "attestation_signing.key").read_bytes().strip()
    )

    def sign(vin: str) -> str:
        now = int(time.time())
        header = {"alg": "HS256", "kid": "gw-att-1", "typ": "vin-attestation+jwt"}
        claims = {
            "iss": "vin-gateway", "sub": account_id, "aud": "vin-gateway", "iat": now,
            "exp": now + 120, "jti": secrets.token_urlsafe(18),
            "vin_sha256": signing.vin_sha256(vin), "basis": "owner", "purpose": "parts_inquiry",
        }  # fmt: skip
        body = (
            signing.b64(json.dumps(header).encode())
            + "."
            + signing.b64(json.dumps(claims).encode())
        )
        mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
        return body + "." + signing.b64(mac)

    return sign


class Lines:
    """Pre-signed request lines (API key, fresh attestation, VIN) for one cell."""

    def __init__(self, cell: Cell, store: Store, work: Path, many: int) -> None:
        self.work = work
        self.rng = random.Random(cell.number)
        self.n = 0
        self.vin_i = 0
        if cell.alg == "RS256":
            assert store.rsa is not None
            accounts = [store.rsa]
        else:
            accounts = store.accounts[: many if cell.accounts > 1 else 1]
        self.signers: list[tuple[str, Callable[[str], str]]] = []
        for acc in accounts:
            if cell.alg == "HS256":
                sign = gateway_signer(Path(store.env["VINGW_DATA_DIR"]), acc["id"])
            else:
                sign = client_signer(acc)
            self.signers.append((acc["api_key"], sign))
        self.order: list[int] = []

    def _account(self) -> int:
        # shuffled across accounts: every account once per round, in a new order each round
        if not self.order:
            self.order = list(range(len(self.signers)))
            self.rng.shuffle(self.order)
        return self.order.pop()

    def write(self, count: int) -> Path:
        self.n += 1
        out = self.work / f"full-{self.n}.tsv"
        with out.open("w") as f:
            for _ in range(count):
                key, sign = self.signers[self._account()]
                vin = VINS[self.vin_i % len(VINS)]
                self.vin_i += 1
                f.write(f"{key}\t{sign(vin)}\t{vin}\n")
        return out


def client_signer(acc: dict[str, Any]) -> Callable[[str], str]:
    """Client-signed ES256/RS256 attestations with the account's own registered key."""
    return lambda vin: signing.attestation(acc["key"], acc["kid"], acc["id"], vin)


def bare_lines(work: Path) -> Path:
    out = work / "bare.tsv"
    out.write_text("".join(f"-\t-\t{vin}\n" for vin in VINS))
    return out


# ---------------------------------------------------------------- one cell


@dataclass
class CellResult:
    cell: Cell
    label: str
    bare: list[Run] = field(default_factory=list)
    full: list[Run] = field(default_factory=list)
    extra_full: list[Run] = field(default_factory=list)  # warm-up and profiled runs
    openloop: dict[str, Any] | None = None
    rows: int | None = None
    answered: int = 0
    sent: int = 0
    reused: int = 0
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def med(runs: list[Run], attr: str) -> float:
        values = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else math.nan

    @property
    def ratio(self) -> float:
        return self.med(self.full, "rps") / self.med(self.bare, "rps")

    @property
    def bad(self) -> int:
        runs = self.bare + self.full + self.extra_full
        ol = self.openloop or {}
        return sum(r.non_2xx + r.errors for r in runs) + ol.get("non_2xx", 0) + ol.get("errors", 0)

    @property
    def rows_ok(self) -> bool:
        return self.rows is not None and self.answered <= self.rows <= self.sent


def tokens_for(rate: float, duration: float, args: argparse.Namespace) -> int:
    return math.ceil(rate * args.headroom * duration) + 4 * args.connections


def run_cell(cell: Cell, store: Store, args: argparse.Namespace) -> CellResult:
    res = CellResult(cell, cell.label(args.accounts))
    print(f"\ncell {cell.number}: {res.label}", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"cell{cell.number}-", dir=store.work))
    lines = Lines(cell, store, work, args.accounts)
    bare_file = bare_lines(work)
    rows_before = store.rows()
    n = str(cell.workers)
    bare_cmd = [sys.executable, "-m", "uvicorn", "loadtests.bare_app:app", "--no-access-log",
                "--log-level", "warning", "--host", "127.0.0.1", "--workers", n]  # fmt: skip
    bare_env = {"PYTHONPATH": str(ROOT)}
    writer_cmd = [str(BIN), "searchlog-writer"]
    try:
        with (
            running(bare_cmd, bare_env, raw=True) as (bare_base, _),
            running(["serve", "--workers", n], store.env) as (full_base, _),
            background(writer_cmd, store.env) as writer,
        ):
            bare_pids = serving_pids(bare_base, cell.workers)
            full_pids = serving_pids(full_base, cell.workers)

            def full_run(rate: float, duration: float) -> Run:
                if cell.accounts > 1:
                    # measured rates under-sized these runs (attestations were reused, refused
                    # as replays): many-account cells sign for --max-rps whatever was measured
                    rate = max(rate, args.max_rps)
                file = lines.write(tokens_for(rate, duration, args))
                run = run_wrk(full_base, file, duration, args, full_pids, writer.pid)
                res.answered += run.requests
                res.sent += run.sent
                if run.sent > run.lines:
                    res.reused += run.sent - run.lines
                file.unlink()
                return run

            run_wrk(bare_base, bare_file, WARMUP_S, args, bare_pids)
            # two warm-ups: the first fills the credential caches (slow with many accounts), the
            # second measures the warm rate that sizes the first repetition's attestations
            for _ in range(2):
                warm = full_run(args.max_rps, WARMUP_S)
                res.extra_full.append(warm)
            estimate = warm.rps
            for rep in range(args.reps):
                res.bare.append(run_wrk(bare_base, bare_file, args.duration, args, bare_pids))
                run = full_run(estimate, args.duration)
                res.full.append(run)
                estimate = max(estimate, run.rps)
                print(
                    f"  rep {rep + 1}/{args.reps}: bare {res.bare[-1].rps:7.0f} req/s, "
                    f"full {run.rps:7.0f} req/s",
                    flush=True,
                )
            if args.profile and cell.number in (1, 4) and cell.workers == 1:
                args.profile.mkdir(parents=True, exist_ok=True)
                out = args.profile / f"cell{cell.number}-full.txt"
                with profiler(full_pids[0], args.duration, out) as spy:
                    time.sleep(0.5)
                    res.extra_full.append(full_run(estimate, args.duration))
                    spy.wait(timeout=args.duration + 30)
                res.notes.append(f"profile (py-spy raw, one extra full run): {out}")
            if cell.number in args.openloop:
                res.openloop = open_loop(full_base, lines, res, args)
                res.answered += res.openloop["completed"]
                res.sent += res.openloop["sent"]
                res.reused += res.openloop["reused"]
            if writer.poll() is not None:
                raise RuntimeError(f"search-log writer exited: {writer.stderr.read()!r}")  # type: ignore[union-attr]
        # servers stopped (their shutdown ships what they buffered), writer stopped: drain
        gateway(["searchlog-writer", "--drain", "--timeout", "60"], store.env)
        res.rows = store.rows() - rows_before
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if res.reused:
        print(f"  warning: {res.reused} attestations were reused; raise --headroom", flush=True)
    print_cell(res, args)
    return res


def open_loop(base: str, lines: Lines, res: CellResult, args: argparse.Namespace) -> dict[str, Any]:
    rate = OPENLOOP_FRACTION * res.med(res.full, "rps")
    file = lines.write(math.ceil(rate * args.duration) + 1)
    cmd = [sys.executable, str(HERE / "openloop.py"), "--url", base, "--rate", f"{rate:.1f}",
           "--duration", str(args.duration), "--lines", str(file),
           "--max-connections", str(args.openloop_max_connections)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                              timeout=args.duration + 120)  # fmt: skip
    finally:
        file.unlink()
    result: dict[str, Any] = json.loads(done.stdout)
    result["fraction"] = OPENLOOP_FRACTION
    return result


# ---------------------------------------------------------------- output


def _range(runs: list[Run], attr: str) -> str:
    values = [getattr(r, attr) for r in runs]
    return f"{min(values):.0f}-{max(values):.0f}"


def cell_rows(res: CellResult) -> list[list[str]]:
    rows = []
    for name, runs in (("bare", res.bare), ("full", res.full)):
        rows.append([
            name,
            f"{res.med(runs, 'rps'):.0f}",
            _range(runs, "rps"),
            f"{res.med(runs, 'cpu_us'):.0f}",
            f"{res.med(runs, 'p50_ms'):.2f}",
            f"{res.med(runs, 'p99_ms'):.2f}",
            str(sum(r.non_2xx + r.errors for r in runs)),
        ])  # fmt: skip
    rows.append(["search-log writer", "", "", f"{res.med(res.full, 'writer_cpu_us'):.0f}",
                 "", "", ""])  # fmt: skip
    return rows


HEAD = ["", "req/s (median)", "range", "CPU us/req", "p50 ms", "p99 ms", "non-2xx"]


def cell_summary(res: CellResult, results: dict[int, CellResult]) -> list[str]:
    out = [f"ratio full/bare (medians, {res.cell.workers} worker(s)): {res.ratio:.2f}"
           + (f" (target >= {t:.2f})" if (t := ratio_target(res.cell)) else "")]  # fmt: skip
    other = results.get(SCALING.get(res.cell.number, 0))
    if other is not None:
        scale = res.med(res.full, "rps") / other.med(other.full, "rps")
        out.append(f"full {res.cell.workers} workers / full 1 worker (cell {other.cell.number}) "
                   f"req/s: {scale:.2f}x (target >= {MIN_SCALING_2W})")  # fmt: skip
    ol = res.openloop
    if ol is not None:
        out.append(
            f"open loop at {ol['fraction']:.0%} of the full median ({ol['target_rate']:.0f} "
            f"req/s, {args_duration(ol)} s): achieved {ol['achieved_rate']:.0f} req/s, p50 "
            f"{ol['p50_ms']:.2f} ms, p99 {ol['p99_ms']:.2f} ms, max {ol['max_ms']:.1f} ms "
            f"(target p99 < {MAX_OPENLOOP_P99_MS:.0f} ms), from scheduled send time; "
            f"non-2xx {ol['non_2xx']}, errors {ol['errors']}, {ol['connections']} connections, "
            f"generator send lag p99 {ol['send_lag_p99_ms']:.2f} ms"
        )
    flag = "OK" if res.rows_ok else "MISMATCH"
    inflight = res.sent - res.answered
    out.append(
        f"search-log rows: {res.rows} vs requests answered {res.answered}"
        + (f" (+{inflight} sent in flight when wrk stopped)" if inflight else "")
        + f": {flag}"
    )
    out.extend(res.notes)
    return out


def args_duration(ol: dict[str, Any]) -> str:
    return f"{ol['scheduled'] / ol['target_rate']:.0f}"


def print_cell(res: CellResult, args: argparse.Namespace) -> None:
    widths = [18, 15, 12, 11, 8, 8, 8]
    print(f"  {args.reps} x {args.duration} s each, {args.connections} connections, interleaved")
    for row in [HEAD, *cell_rows(res)]:
        cols = zip(row, widths, strict=True)
        print("  " + "".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cols)))
    for line in cell_summary(res, args.results):
        print("  " + line)
    sys.stdout.flush()


def ratio_target(cell: Cell) -> float | None:
    return {"ES256": MIN_RATIO_ES256, "HS256": MIN_RATIO_HS256}.get(cell.alg)


def failures(results: dict[int, CellResult]) -> list[str]:
    failed = []
    for num, res in results.items():
        target = ratio_target(res.cell)
        if target is not None and not res.ratio >= target:
            failed.append(f"cell {num} ({res.label}): ratio {res.ratio:.2f} < {target:.2f}")
        other = results.get(SCALING.get(num, 0))
        if other is not None:
            scale = res.med(res.full, "rps") / other.med(other.full, "rps")
            if not scale >= MIN_SCALING_2W:
                failed.append(f"cell {num}: 2 workers {scale:.2f}x of cell {other.cell.number} "
                              f"< {MIN_SCALING_2W}x")  # fmt: skip
        if res.openloop is not None and not res.openloop["p99_ms"] < MAX_OPENLOOP_P99_MS:
            failed.append(f"cell {num}: open-loop p99 {res.openloop['p99_ms']:.2f} ms "
                          f">= {MAX_OPENLOOP_P99_MS:.0f} ms")  # fmt: skip
        if not res.rows_ok:
            failed.append(f"cell {num}: search-log rows {res.rows} != requests {res.answered}"
                          f"..{res.sent}")  # fmt: skip
        if res.bad:
            failed.append(f"cell {num}: {res.bad} non-2xx responses or socket errors")
        if res.reused:
            failed.append(f"cell {num}: {res.reused} attestations reused")
    return failed


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/meminfo").read_text().splitlines()
         if ln.startswith("MemTotal")),
        "unknown",
    )  # fmt: skip
    kib = int(mem.split()[0]) if mem[0].isdigit() else 0
    versions = {}
    for dist in ("fastapi", "uvicorn", "redis", "psycopg", "cryptography"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "-"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{kib / 1024 / 1024:.1f} GiB" if kib else mem,
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "wrk": (wrk.stdout + wrk.stderr).split("Copyright")[0].strip(),
    }


def write_docs(path: Path, results: dict[int, CellResult], args: argparse.Namespace,
               info: dict[str, str], failed: list[str]) -> None:  # fmt: skip
    md = [
        BEGIN,
        "",
        f"Measured {args.started:%Y-%m-%d %H:%M} UTC (wall time {args.wall:.0f} s) with",
        "",
        "```sh",
        args.command,
        "```",
        "",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} memory; load "
        f"average (1/5/15 min) {args.load_before} before, {args.load_after} after",
        f"- Python {info['python']}; {info['versions']}; {info['wrk']}",
        f"- {args.reps} x {args.duration} s per server and cell, interleaved bare/full, wrk one "
        f"thread, {args.connections} connections; CPU = utime+stime of the serving processes per "
        "answered request",
        "",
    ]
    for res in results.values():
        md.append(f"### Cell {res.cell.number}: {res.label}")
        md.append("")
        md.append("| " + " | ".join(HEAD) + " |")
        md.append("|---|" + "---:|" * (len(HEAD) - 1))
        for row in cell_rows(res):
            md.append("| " + " | ".join(row) + " |")
        md.append("")
        for line in cell_summary(res, results):
            md.append(f"- {line}")
        md.append("")
    md.append("Targets: " + ("all met." if not failed else "missed:"))
    md.extend(f"- {f}" for f in failed)
    md += ["", END]
    replace_section(path, BEGIN, END, md)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cells", help="comma list of cell numbers 1-8 (default: all; --quick: 1,4)"
    )
    parser.add_argument("--duration", type=int, help="seconds per run (default 10; --quick: 3)")
    parser.add_argument("--reps", type=int, help="runs per server and cell (default 3; --quick: 1)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--accounts", type=int, help="the many-accounts cells' count (default 1000; --quick: 100)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="short trial: 3 s, 1 rep, cells 1,4, 100 accounts"
    )
    parser.add_argument(
        "--openloop", help="cells with an open-loop run (default 1,4 of those chosen; 'none')"
    )
    parser.add_argument("--openloop-max-connections", type=int, default=256)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy raw profiles of cells 1 and 4's worker, one extra full run each",
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"rewrite the results section of {DOCS.relative_to(ROOT)}",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--max-rps", type=float, default=4000, help="rate the warm-up's attestations are signed for"
    )
    parser.add_argument(
        "--headroom",
        type=float,
        default=1.5,
        help="attestations per run = headroom x best rate so far x duration",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3 if quick else 10)
    args.reps = args.reps or (1 if quick else 3)
    args.accounts = args.accounts or (100 if quick else MANY)
    spec = args.cells or ("1,4" if quick else ",".join(map(str, CELLS)))
    try:
        args.cell_list = [CELLS[int(c)] for c in spec.split(",") if c.strip()]
    except (KeyError, ValueError):
        parser.error(f"--cells: choose from {sorted(CELLS)}")
    chosen = [c.number for c in args.cell_list]
    if args.openloop is None:
        args.openloop = [c for c in (1, 4) if c in chosen]
    elif args.openloop == "none":
        args.openloop = []
    else:
        args.openloop = [int(c) for c in args.openloop.split(",") if c.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench_lookup: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    args.started = datetime.now(UTC)
    args.command = shlex.join([".venv/bin/python", "loadtests/bench_lookup.py", *sys.argv[1:]])
    args.load_before = load_average()
    args.results = {}
    info = machine()
    print(f"bench_lookup: cells {','.join(str(c.number) for c in args.cell_list)}; "
          f"{args.reps} x {args.duration} s; {args.connections} connections; load average "
          f"{args.load_before}")  # fmt: skip
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="vingw-bench-"))
    try:
        for kind in ("sqlite", "postgres"):
            cells = [c for c in args.cell_list if c.store == kind]
            if not cells:
                continue
            print(f"\nstore {kind}+redis", flush=True)
            with make_store(kind, work, args) as store:
                need = max(args.accounts if c.accounts > 1 else 1 for c in cells)
                set_up_accounts(store, need, rsa=any(c.alg == "RS256" for c in cells))
                for cell in cells:
                    args.results[cell.number] = run_cell(cell, store, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.wall = time.monotonic() - t0
    args.load_after = load_average()
    results = dict(sorted(args.results.items()))
    failed = failures(results)
    print(f"\nload average before {args.load_before}, after {args.load_after}; "
          f"{args.wall:.0f} s")  # fmt: skip
    if args.write_docs:
        write_docs(args.docs, results, args, info, failed)
        print(f"wrote the results section of {args.docs}")
    if failed:
        for f in failed:
            print(f"FAIL: {f}")
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print(
            "bench_lookup: interrupted (servers stopped, temporary data removed)", file=sys.stderr
        )
        raise SystemExit(130) from None
