"""Export, erasure, statistics and purge on a PostgreSQL search log of 2,000,000 rows.

    .venv/bin/python loadtests/bench_searchlog.py [--rows 2000000] [--accounts 20000]
        [--months 6] [--repeat 7] [--postgres-url postgresql://postgres@127.0.0.1:5432]
        [--write-docs]

Creates a fresh database (``vingw_bench_sl_<random>``, dropped at the end unless ``--keep``),
migrates it with the project's search-log migrations up to 0003, creates the monthly
partitions with the repository, and COPYs ``--rows`` synthetic rows spread evenly over the last
``--months`` months: ``--accounts`` accounts, pseudonymized with the project's key ring (one key
per month), makes / model years / countries / outcomes / codes drawn from small lists. Then it
runs migration 0004 (rollup backfill, the ``(account_pseudonym, at)`` index) and ANALYZE, and
measures, through ``SearchLogRepository`` on the project's async engine:

- export (``rows_for``: the account's pseudonym under every live key) and erasure
  (``delete_for``) of ``--repeat`` distinct accounts each;
- statistics (``daily_counts``) over 30 and 400 days, from the rollups;
- the purge's epoch probe (``epochs_with_rows`` of every epoch of the key ring), and one real
  purge dropping the oldest month;
- a writer batch (``insert_many`` of 500 new rows, rollups included).

For comparison the previous release's query shapes run on the same data: export as one OR of
``(key_epoch, account_pseudonym)`` pairs, statistics as a grouped scan of the raw rows, the
purge's ``SELECT DISTINCT key_epoch``. Figures are medians over the repetitions (the slowest
in brackets). ``--write-docs`` writes them into docs/benchmarks.md between the
``bench_searchlog`` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, or_, select
from sqlalchemy.engine import make_url
from sqlmodel import col

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.db import Database, migrate  # noqa: E402
from gateway.searchlog.models import SearchEvent  # noqa: E402
from gateway.searchlog.pseudonym import KeyRing, month_start, next_month  # noqa: E402
from gateway.searchlog.repository import ROLLUP_DIMENSIONS, SearchLogRepository  # noqa: E402
from loadtests.docs_section import load_average, replace_section  # noqa: E402

BEGIN, END = "<!-- bench_searchlog:begin -->", "<!-- bench_searchlog:end -->"
DAY = 86_400
MAKES = ["Honda", "Toyota", "Volkswagen", "Ford", "BMW", "Škoda", "Renault", "Kia", "Volvo",
         "Fiat", "Peugeot", "Audi", "Nissan", "Mazda", "Hyundai", None]  # fmt: skip
COUNTRIES = ["US", "DE", "JP", "FR", "KR", "CZ", "SE", "IT", "GB", "ES", None]
CODES = ["attestation_invalid", "attestation_replayed", "rate_limited", "vin_invalid"]
COLUMNS = (
    "event_id",
    "at",
    "key_epoch",
    "account_pseudonym",
    "vin_pseudonym",
    "wmi",
    "make",
    "model_year",
    "country_code",
    "endpoint",
    "outcome",
    "code",
    "basis",
    "purpose",
    "jti_digest",
    "gateway_issued",
    "client_ip",
    "ua_family",
    "latency_ms",
    "instance",
)


def conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def synthetic_row(rng: random.Random, at: int, epoch: str, pseudonym: str) -> tuple[Any, ...]:
    r = rng.random()
    outcome, code = ("ok", None) if r < 0.85 else ("miss", None) if r < 0.95 else (
        "refused", rng.choice(CODES))  # fmt: skip
    return (
        secrets.token_hex(16), at, epoch, pseudonym, secrets.token_hex(16), "1HG",
        rng.choice(MAKES), rng.randint(1990, 2025), rng.choice(COUNTRIES), "lookup", outcome,
        code, "owner", "repair", secrets.token_hex(16), rng.random() < 0.3,
        f"203.0.{rng.randint(0, 255)}.0/24", "httpx", round(rng.uniform(1, 30), 2), "bench",
    )  # fmt: skip


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(20261202)
        self.now = int(time.time())
        self.first = month_start(self.now)
        for _ in range(args.months - 1):
            self.first = month_start(self.first - 1)
        self.tmp = Path(tempfile.mkdtemp(prefix="vingw-bench-sl-"))
        self.keyring = KeyRing(self.tmp / "keys.json", "month")
        self.accounts = [f"bench-acct-{i}" for i in range(args.accounts)]
        self.name = f"vingw_bench_sl_{secrets.token_hex(4)}"
        base = args.postgres_url.rstrip("/")
        self.admin = base + "/postgres"
        self.url = f"{base}/{self.name}"
        self.figures: dict[str, str] = {}
        self.rows: list[list[str]] = []

    # --- loading ----------------------------------------------------------------------------

    async def load(self) -> None:
        with psycopg.connect(conninfo(self.admin), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.name}"')
        migrate("searchlog", self.url, "0003")
        db = Database(self.url)
        starts, start = [], self.first
        while start <= self.now:
            starts.append(start)
            start = next_month(start)
        async with db.session() as session:
            await SearchLogRepository(session).ensure_partitions(starts)
        await db.dispose()
        span = self.now - self.first
        pseudonyms: dict[tuple[int, str], str] = {}
        t0 = time.perf_counter()
        with psycopg.connect(conninfo(self.url)) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY search_event ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for _ in range(self.args.rows):
                    at = self.first + self.rng.randrange(span)
                    epoch = self.keyring.epoch_of(at)
                    acct = self.rng.randrange(len(self.accounts))
                    p = pseudonyms.get((acct, epoch))
                    if p is None:
                        p = pseudonyms[(acct, epoch)] = self.keyring.pseudonym(
                            "account", self.accounts[acct], epoch
                        )
                    copy.write_row(synthetic_row(self.rng, at, epoch, p))
            conn.commit()
        self.figures["load"] = f"{time.perf_counter() - t0:.0f} s"
        t0 = time.perf_counter()
        migrate("searchlog", self.url)
        self.figures["migrate"] = f"{time.perf_counter() - t0:.1f} s"
        with psycopg.connect(conninfo(self.url), autocommit=True) as conn:
            conn.execute("ANALYZE search_event")
            conn.execute("ANALYZE search_daily_count")
            size = conn.execute(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                "WHERE inhparent = 'search_event'::regclass"
            ).fetchone()
            rollups = conn.execute("SELECT count(*) FROM search_daily_count").fetchone()
        self.figures["size"] = f"{(size[0] if size else 0) / 2**20:.0f} MiB"
        self.figures["rollup_rows"] = str(rollups[0] if rollups else 0)

    # --- measuring --------------------------------------------------------------------------

    async def timed(
        self, what: str, run: Callable[[int], Awaitable[Any]], repeat: int, note: str = ""
    ) -> list[float]:
        times = []
        for i in range(repeat):
            t0 = time.perf_counter()
            await run(i)
            times.append((time.perf_counter() - t0) * 1000)
        med, worst = statistics.median(times), max(times)
        self.rows.append([what, f"{med:.1f} ({worst:.1f})", str(repeat), note])
        print(f"{what}: median {med:.1f} ms, max {worst:.1f} ms over {repeat}  {note}")
        return times

    async def measure(self) -> None:
        a, db = self.args, Database(self.url)
        repeat, slow = a.repeat, min(a.repeat, 3)
        # distinct accounts for each contender: none reads pages another one brought in
        picked = self.rng.sample(self.accounts, 3 * repeat)
        export_accts, old_accts, erase_accts = (picked[i::3] for i in range(3))
        returned: list[int] = []

        async def export(i: int) -> None:
            async with db.session() as s:
                pseudonyms = self.keyring.all_pseudonyms("account", export_accts[i])
                returned.append(len(await SearchLogRepository(s).rows_for(pseudonyms)))

        async def export_old(i: int) -> None:
            pseudonyms = self.keyring.all_pseudonyms("account", old_accts[i])
            subject = or_(
                *(
                    (col(SearchEvent.key_epoch) == e) & (col(SearchEvent.account_pseudonym) == p)
                    for e, p in pseudonyms.items()
                )
            )
            async with db.session() as s:
                q = select(SearchEvent).where(subject).order_by(col(SearchEvent.at))
                await (await s.connection()).execute(q)

        deleted: list[int] = []

        async def erase(i: int) -> None:
            async with db.session() as s:
                pseudonyms = self.keyring.all_pseudonyms("account", erase_accts[i])
                deleted.append(await SearchLogRepository(s).delete_for(pseudonyms))

        def stats(days: int) -> Callable[[int], Awaitable[Any]]:
            since = (self.now // DAY - days + 1) * DAY

            async def run(_: int) -> None:
                async with db.session() as s:
                    await SearchLogRepository(s).daily_counts(since, ROLLUP_DIMENSIONS)

            return run

        async def stats_old(_: int) -> None:
            since = self.now - 30 * DAY
            day = col(SearchEvent.at) // 86400
            async with db.session() as s:
                for field in ROLLUP_DIMENSIONS:
                    column = getattr(SearchEvent, field)
                    q = select(day.label("day"), column, func.count()).where(
                        col(SearchEvent.at) >= since
                    )
                    await (await s.connection()).execute(
                        q.group_by("day", column).order_by("day", column)
                    )

        async def probe(_: int) -> None:
            async with db.session() as s:
                await SearchLogRepository(s).epochs_with_rows(self.keyring.epochs())

        async def probe_old(_: int) -> None:
            async with db.session() as s:
                await (await s.connection()).execute(select(col(SearchEvent.key_epoch)).distinct())

        async def write_batch(_: int) -> None:
            rows = [
                dict(zip(COLUMNS, synthetic_row(
                    self.rng, self.now - 60, self.keyring.epoch_of(self.now - 60),
                    self.keyring.pseudonym("account", self.rng.choice(self.accounts),
                                           self.keyring.epoch_of(self.now - 60))), strict=True))
                for _ in range(500)
            ]  # fmt: skip
            async with db.session() as s:
                await SearchLogRepository(s).insert_many(rows)

        try:
            async with db.session() as s:  # connect first: no run pays the pool's connection
                await (await s.connection()).execute(select(1))
            await self.timed("export, one account (new)", export, repeat)
            self.rows[-1][3] = f"{statistics.median(returned):.0f} rows each"
            await self.timed("export, one account (old query shape)", export_old, repeat)
            await self.timed("erasure, one account", erase, repeat)
            self.rows[-1][3] = f"{statistics.median(deleted):.0f} rows each"
            await self.timed("statistics, 30 days (rollups)", stats(30), repeat)
            await self.timed("statistics, 400 days (rollups)", stats(400), repeat)
            await self.timed("statistics, 30 days (old: raw rows)", stats_old, slow)
            await self.timed(
                "purge's epoch probe, every key epoch", probe, repeat,
                f"{len(self.keyring.epochs())} epochs",
            )  # fmt: skip
            await self.timed("purge's SELECT DISTINCT key_epoch (old)", probe_old, slow)
            await self.timed("writer batch, 500 rows + rollups", write_batch, repeat)

            async def purge(_: int) -> None:
                floor = next_month(self.first)
                async with db.session() as s:
                    repo = SearchLogRepository(s)
                    report = await repo.purge(floor_cut=floor, ceiling_cut=floor, held=set())
                    ended = [self.keyring.epoch_of(self.first)]
                    await repo.epochs_with_rows(ended)
                self.figures["purged"] = str(report["deleted"])

            await self.timed("purge dropping the oldest month", purge, 1)
            self.rows[-1][3] = f"{self.figures['purged']} rows"
        finally:
            await db.dispose()

    def cleanup(self) -> None:
        if not self.args.keep:
            with psycopg.connect(conninfo(self.admin), autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    # --- report -----------------------------------------------------------------------------

    def markdown(self, load_before: str, load_after: str) -> list[str]:
        a = self.args
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                    .splitlines() if ln.startswith("model name")), "unknown")  # fmt: skip
        kib = next((int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                    if ln.startswith("MemTotal")), 0)  # fmt: skip
        with psycopg.connect(conninfo(self.admin)) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        command = "loadtests/bench_searchlog.py " + " ".join(sys.argv[1:])
        return [
            BEGIN,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with",
            "",
            "```sh",
            f".venv/bin/python {command.strip()}",
            "```",
            "",
            f"- machine: {os.cpu_count()} CPUs ({cpu}), {kib / 2**20:.1f} GiB memory, shared "
            f"with other work; load average (1/5/15 min) {load_before} before, {load_after} after",
            f"- Python {platform.python_version()}, PostgreSQL {row[0] if row else '?'}",
            f"- {a.rows:,} rows over {a.months} monthly partitions, {a.accounts:,} accounts "
            f"(about {a.rows / a.accounts / a.months:.0f} rows per account and month), "
            f"{self.figures['size']} with indexes; COPY took {self.figures['load']}, migration "
            f"0004 (rollup backfill and index) {self.figures['migrate']}, "
            f"{self.figures['rollup_rows']} rollup rows",
            "",
            "| operation | ms, median (slowest) | runs | |",
            "|---|---:|---:|---|",
            *("| " + " | ".join(r) + " |" for r in self.rows),
            "",
            "The old query shapes ran on the same data and indexes (the previous release's "
            "export, statistics and purge queries).",
            "",
            END,
        ]


def write_docs(path: Path, md: list[str]) -> None:
    intro = (
        "## Results of bench_searchlog.py\n\nWritten by `loadtests/bench_searchlog.py "
        "--write-docs`; nothing between the markers is edited by hand.\n\n"
    )
    replace_section(path, BEGIN, END, md, intro)


async def main(args: argparse.Namespace) -> None:
    bench = Bench(args)
    before = load_average()
    try:
        t0 = time.perf_counter()
        await bench.load()
        print(f"loaded {args.rows} rows in {time.perf_counter() - t0:.0f} s; {bench.figures}")
        await bench.measure()
    finally:
        bench.cleanup()
    md = bench.markdown(before, load_average())
    print("\n".join(md))
    if args.write_docs:
        write_docs(args.docs, md)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--accounts", type=int, default=20_000)
    p.add_argument("--months", type=int, default=6)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--keep", action="store_true", help="keep the database (for EXPLAIN by hand)")
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    asyncio.run(main(p.parse_args()))
