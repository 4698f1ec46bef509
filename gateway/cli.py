"""``vin-gateway``: serve | migrate | create-admin | catalogue-serve | purge | searchlog-writer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import sys
from typing import Any

from pydantic import ValidationError

from gateway.config import Settings, trusted_networks

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"vin-gateway: configuration error ({where}): {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def _uvicorn_log_config() -> dict[str, Any]:
    """Uvicorn's own logs without its access log (ours is scrubbed: route templates only)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "vin_gateway": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "vin_gateway.access": {"level": os.environ.get("VINGW_ACCESS_LOG_LEVEL", "INFO")},
        },
    }


def _uvicorn(factory: str, args: argparse.Namespace, **extra: Any) -> None:
    """Uvicorn without its access log (ours is scrubbed) and without a Server header."""
    import uvicorn

    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=_uvicorn_log_config(),
        server_header=False,
        **extra,
    )


def cmd_serve(args: argparse.Namespace) -> int:

    settings = _settings()
    if args.workers > 1 and settings.embedded_redis:
        print(
            "vin-gateway: --workers above 1 needs a shared Redis (replay cache, rate limits, "
            "search-log queue): set VINGW_REDIS_URL. The embedded stand-in lives in one process.",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1 and settings.metrics_enabled:
        metrics_dir = settings.data_dir / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    if args.workers > 1 and settings.run_migrations_on_start:
        from gateway.state import run_migrations

        run_migrations(settings)
        os.environ["VINGW_MIGRATE_ON_START"] = "false"
    try:
        trusted = trusted_networks(
            settings.trusted_proxies if args.trusted_proxies is None else args.trusted_proxies
        )
    except ValueError as exc:
        print(f"vin-gateway: --trusted-proxies: {exc}", file=sys.stderr)
        return 2
    from gateway.kv import durability_refusal

    refusal = asyncio.run(durability_refusal(settings))  # before any worker starts
    if refusal is not None:
        print(f"vin-gateway: {refusal}", file=sys.stderr)
        return 2
    _uvicorn("gateway.main:create_app", args, **proxy_options(trusted))
    return 0


def proxy_options(trusted: list[str]) -> dict[str, Any]:
    """Uvicorn's forwarded-header handling: off unless proxies are named, so a client can never
    choose its own IP by sending a header; on, only a named proxy's X-Forwarded-For counts."""
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


def cmd_migrate(_: argparse.Namespace) -> int:
    from gateway.state import run_migrations

    settings = _settings()
    run_migrations(settings)
    print("vin-gateway: accounts and search-log databases are at the latest schema")
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from gateway.state import build_state

    settings = _settings()
    password = None
    if args.password_stdin:
        password = (
            sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
        )

    async def run() -> int:
        state = await build_state(settings, migrate_on_start=settings.run_migrations_on_start)
        try:
            account, generated = await state.accounts.create_admin(args.email, password)
        finally:
            await state.close()
        print(f"admin account {account.id} ({account.email})")
        if generated:
            print(f"one-time password: {generated}")
        return 0

    return asyncio.run(run())


def cmd_purge(args: argparse.Namespace) -> int:
    """Apply search-log retention once (the gateway also does it every
    VINGW_SEARCHLOG_PURGE_INTERVAL_S): drop/delete rows past the floor, never held ones, and
    destroy the pseudonym keys of epochs with nothing left."""
    import json

    from gateway.db import Database
    from gateway.searchlog.service import SearchLog

    settings = _settings()
    if settings.run_migrations_on_start:
        from gateway.db import migrate

        migrate("searchlog", settings.search_log_url)

    async def run() -> int:
        db = Database(settings.search_log_url)
        try:
            report = await SearchLog.from_settings(settings, db).purge(now=args.now)
        finally:
            await db.dispose()
        print(json.dumps(report, sort_keys=True))
        return 0

    return asyncio.run(run())


def cmd_searchlog_writer(args: argparse.Namespace) -> int:
    """Consume the search-log stream into the log database (run it alongside workers started
    with VINGW_SEARCHLOG_CONSUMER=false, or as extra capacity); SIGTERM stops it cleanly."""
    import signal

    from gateway.db import Database
    from gateway.searchlog.service import SearchLog

    settings = _settings()
    if settings.redis_url is None:
        print("vin-gateway: searchlog-writer needs VINGW_REDIS_URL", file=sys.stderr)
        return 2

    async def run() -> int:
        db = Database(settings.search_log_url)
        searchlog = SearchLog.from_settings(settings, db)
        try:
            if args.drain:
                await searchlog.drain(timeout_s=args.timeout)
                return 0
            task = asyncio.create_task(searchlog.consume_forever())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
            logging.getLogger("vin_gateway").info("search-log writer consuming the stream")
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return 0
        finally:
            await searchlog.stop(timeout_s=args.timeout)
            await db.dispose()

    return asyncio.run(run())


def cmd_catalogue_serve(args: argparse.Namespace) -> int:

    _uvicorn("gateway.catalogue.server:create_catalogue_app", args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vin-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--trusted-proxies",
        default=None,
        help="IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed "
        "(default: VINGW_TRUSTED_PROXIES; empty: none)",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="run the Alembic migrations of both databases")
    migrate.set_defaults(func=cmd_migrate)

    admin = sub.add_parser("create-admin", help="create or promote an admin account")
    admin.add_argument("--email", required=True)
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin instead of generating one",
    )
    admin.set_defaults(func=cmd_create_admin)

    purge = sub.add_parser("purge", help="apply search-log retention once")
    purge.add_argument(
        "--now", type=float, default=None, help="pretend it is this epoch time (for checks)"
    )
    purge.set_defaults(func=cmd_purge)

    writer = sub.add_parser(
        "searchlog-writer", help="consume the search-log Redis stream into the log database"
    )
    writer.add_argument(
        "--drain", action="store_true", help="write what the stream holds now, then exit"
    )
    writer.add_argument("--timeout", type=float, default=30.0, help="drain/shutdown time limit")
    writer.set_defaults(func=cmd_searchlog_writer)

    cat = sub.add_parser("catalogue-serve", help="serve the sample catalogue over HTTP")
    cat.add_argument("--host", default="127.0.0.1")
    cat.add_argument("--port", type=int, default=8100)
    cat.add_argument("--workers", type=int, default=1)
    cat.set_defaults(func=cmd_catalogue_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
