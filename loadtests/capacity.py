"""Capacity figures for docs/deploy.md: Redis bytes per active account, search-log bytes per
million rows on PostgreSQL. Both measured, through the project's own code.

    .venv/bin/python loadtests/capacity.py [--accounts 2000] [--lookups 20]
        [--rows 200000] [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--skip-redis] [--skip-postgres]

Redis: starts its own ``redis-server`` on a free loopback port (empty, no persistence), reads
``INFO memory`` used_memory, then for each of ``--accounts`` accounts runs ``--lookups``
admissions through ``Limiter.admit`` (the admission script, distinct VINs, a jti each, the
origin record, half of them through an API key's bucket) and one successful login through
``LoginThrottle`` (its known network), reads used_memory again and divides by the accounts. The
replay records live only as long as an attestation (5 min by default): they are then deleted
and the memory read a third time, so both the busy figure and the lasting one are shown.

PostgreSQL: creates a database (``vingw_capacity_<random>``, dropped at the end), migrates it
with the project's migrations, and writes ``--rows`` rows made by ``pseudonymize`` (the key
ring, truncated IPs, user-agent families) with ``SearchLogRepository.insert_many`` in the
writer's batches of 500, spread over the current month (one partition), 1000 accounts. Then
VACUUM ANALYZE and ``pg_total_relation_size`` of every table of the search log (partitions,
indexes, TOAST and the daily rollups included), scaled linearly to one million rows.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.accounts.throttle import LoginThrottle  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.db import Database, migrate  # noqa: E402
from gateway.limits.limiter import Limiter, LimitPolicy  # noqa: E402
from gateway.searchlog.events import QueryEvent, pseudonymize  # noqa: E402
from gateway.searchlog.pseudonym import KeyRing, month_start  # noqa: E402
from gateway.searchlog.repository import SearchLogRepository  # noqa: E402

ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
MAKES = [("1HG", "Honda", "US"), ("WVW", "Volkswagen", "DE"), ("JTD", "Toyota", "JP")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def random_vin(rng: random.Random) -> str:
    return rng.choice(MAKES)[0] + "".join(rng.choice(ALPHABET) for _ in range(14))


async def redis_per_account(accounts: int, lookups: int) -> dict[str, float]:
    from redis.asyncio import Redis

    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("capacity: redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="vingw-capacity-")
    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    redis = Redis(port=port)
    try:
        for _ in range(100):
            try:
                await redis.ping()
                break
            except OSError:
                await asyncio.sleep(0.05)
        settings = Settings(_env_file=None)
        limiter = Limiter(redis, LimitPolicy.from_settings(settings), key=secrets.token_bytes(32))
        throttle = LoginThrottle(redis, settings, key=secrets.token_bytes(32))
        rng = random.Random(7)

        async def used() -> int:
            await asyncio.sleep(0.2)
            return int((await redis.info("memory"))["used_memory"])

        before = await used()
        now = int(time.time())
        for a in range(accounts):
            account = "acct_" + "".join(rng.choice(ALPHABET) for _ in range(10))
            for i in range(lookups):
                decision = await limiter.admit(
                    account,
                    jti=secrets.token_urlsafe(16),
                    jti_ttl=settings.attestation_max_lifetime_s,
                    cost=2,
                    key_id=f"key_{a:08d}" if i % 2 else None,
                    vin=limiter.signals_of(random_vin(rng)),
                    iat=now,
                )
                assert decision.verdict == "ok", decision
            attempt = await throttle.admit(f"w{a}@workshop.example", f"203.0.{a % 256}.7")
            await throttle.succeeded(attempt)
        busy = await used()
        keys = int(await redis.dbsize())
        replay = [k async for k in redis.scan_iter(match="vl:*:jti:*", count=1000)]
        for start in range(0, len(replay), 1000):
            await redis.delete(*replay[start : start + 1000])
        lasting = await used()
        return {
            "accounts": accounts,
            "lookups": lookups,
            "keys_per_account": keys / accounts,
            "busy_bytes_per_account": (busy - before) / accounts,
            "lasting_bytes_per_account": (lasting - before) / accounts,
        }
    finally:
        await redis.aclose()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def searchlog_per_million(rows: int, admin_url: str) -> dict[str, float]:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url).set(drivername="postgresql")
    conninfo = admin.render_as_string(hide_password=False)
    name = f"vingw_capacity_{secrets.token_hex(4)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.set(database=name).render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp(prefix="vingw-capacity-"))
    db = Database(url)
    try:
        migrate("searchlog", url)
        keyring = KeyRing(tmp / "keys.json", "month")
        rng = random.Random(11)
        start = month_start(time.time())
        span = max(1, int(time.time()) - start)
        accounts = [f"acct_{i:010d}" for i in range(1000)]
        began = time.monotonic()
        for offset in range(0, rows, 500):
            batch = []
            for _ in range(min(500, rows - offset)):
                wmi, make, country = rng.choice(MAKES)
                event = QueryEvent(
                    account_id=rng.choice(accounts),
                    endpoint="lookup",
                    outcome="ok",
                    vin=random_vin(rng),
                    wmi=wmi,
                    make=make,
                    model_year=rng.randrange(1995, 2027),
                    country_code=country,
                    basis="owner",
                    purpose="maintenance",
                    owner_ref=secrets.token_hex(8),
                    jti=secrets.token_urlsafe(16),
                    token_sha256=secrets.token_hex(32),
                    gateway_issued=rng.random() < 0.3,
                    client_ip=f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    user_agent="workshop-suite/4.2 python-httpx/0.28",
                    latency_ms=rng.uniform(2, 40),
                )
                batch.append(pseudonymize(event, start + rng.randrange(span), keyring, "gw-1"))
            async with db.session() as session:
                await SearchLogRepository(session).insert_many(batch)
        load_s = time.monotonic() - began
        with psycopg.connect(
            admin.set(database=name).render_as_string(False), autocommit=True
        ) as c:
            c.execute("VACUUM ANALYZE")
            (stored,) = c.execute("SELECT count(*) FROM search_event").fetchone()  # type: ignore[misc]
            (total,) = c.execute(  # type: ignore[misc]
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm')"
            ).fetchone()
            (events,) = c.execute(  # type: ignore[misc]
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r' "
                "AND c.relname LIKE 'search_event%'"
            ).fetchone()
        return {
            "rows": stored,
            "load_s": load_s,
            "bytes_per_row": int(total) / stored,
            "event_tables_mb_per_million": int(events) / stored * 1e6 / 2**20,
            "all_tables_mb_per_million": int(total) / stored * 1e6 / 2**20,
        }
    finally:
        await db.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    if not args.skip_redis:
        r = await redis_per_account(args.accounts, args.lookups)
        print(
            f"Redis: {r['accounts']} accounts x {r['lookups']} lookups: "
            f"{r['keys_per_account']:.1f} keys per account; "
            f"{r['busy_bytes_per_account']:.0f} B per account with its replay records, "
            f"{r['lasting_bytes_per_account']:.0f} B once they expired"
        )
    if not args.skip_postgres:
        p = await searchlog_per_million(args.rows, args.postgres_url)
        print(
            f"PostgreSQL: {p['rows']} rows loaded in {p['load_s']:.0f} s: "
            f"{p['bytes_per_row']:.0f} B per row; scaled to 1,000,000 rows: "
            f"{p['event_tables_mb_per_million']:.0f} MiB search_event (heap, indexes, TOAST), "
            f"{p['all_tables_mb_per_million']:.0f} MiB with the rollups and other tables"
        )


if __name__ == "__main__":
    asyncio.run(main())
