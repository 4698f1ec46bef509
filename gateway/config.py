"""Settings: environment variables with the ``VINGW_`` prefix (a ``.env`` file is read too).

With nothing configured the gateway runs on embedded defaults: two SQLite files under the data
dir, the sample catalogue shipped in the package and an in-process stand-in for Redis.
"""

from __future__ import annotations

import ipaddress
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

PLACEHOLDER_SECRETS = frozenset({"changethis", "change-me", "changeme", "secret", "password", ""})


def async_database_url(url: str) -> str:
    """The SQLAlchemy URL with the async driver this project uses for its dialect."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database backend {backend!r}: use SQLite or PostgreSQL")


def sync_database_url(url: str) -> str:
    """The same database with a synchronous driver (Alembic runs synchronously)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}.get(backend)
    if driver is None:
        raise ValueError(f"unsupported database backend {backend!r}: use SQLite or PostgreSQL")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def same_database(a: str, b: str) -> bool:
    """True when two URLs name the same database (host, port and database; driver ignored)."""
    ua, ub = make_url(a), make_url(b)
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        da, db = ua.database or ":memory:", ub.database or ":memory:"
        if ":memory:" in (da, db):
            return False
        return Path(da).resolve() == Path(db).resolve()
    return (_host(ua.host), ua.port or 5432, ua.database) == (
        _host(ub.host),
        ub.port or 5432,
        ub.database,
    )


def trusted_networks(csv: str) -> list[str]:
    """The comma list of proxy IPs/CIDRs, each checked (ValueError names the bad entry)."""
    entries = sorted({n.strip() for n in csv.split(",") if n.strip()})
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return entries


_LOCAL_HOSTS = frozenset({None, "", "localhost", "127.0.0.1", "::1", "[::1]"})


def _host(host: str | None) -> str | None:
    """Loopback spellings (and a Unix socket, no host) are one host."""
    return "localhost" if host in _LOCAL_HOSTS else host


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VINGW_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Path("var")
    database_url: str | None = None
    log_database_url: str | None = None
    redis_url: str | None = None
    # wall time, so it includes event-loop delay under load: 0.25 s gave false 503s at 120
    # concurrent requests on 2 cores; still bounded, so a dead Redis never hangs a request
    redis_timeout_s: float = Field(default=1.0, gt=0)
    # a configured Redis that does not persist (AOF or RDB) or may evict keys: false logs an
    # error and sets vingw_redis_durability, true refuses to start (docs/deploy.md "Redis").
    # Off by default: development and test Redis servers rarely persist, and a provider may
    # persist in ways CONFIG/INFO do not show; production deployments turn it on.
    redis_require_durable: bool = False
    # VINGW_REDIS_URL names one node of a Redis Cluster: the gateway and the search-log writer
    # discover the others and route each key by its hash slot (docs/deploy.md "Redis Cluster")
    redis_cluster: bool = False
    catalogue_url: str | None = None
    catalogue_timeout_s: float = Field(default=2.0, gt=0)
    catalogue_retries: int = Field(default=2, ge=0, le=5)
    catalogue_cache_size: int = Field(default=4096, ge=0)
    # 5 min: a catalogue changes a few times a day, so a fix or a new type is seen within minutes,
    # while repeat lookups of a vehicle (a workshop queries one car several times in a visit)
    # are still served from the cache; 0: no caching (every lookup asks the catalogue)
    catalogue_cache_ttl_s: float = Field(default=300.0, ge=0)

    instance: str = "gw-1"
    issuer: str = "vin-gateway"
    audience: str = "vin-gateway"
    attestation_max_lifetime_s: int = Field(default=300, gt=0)
    attestation_future_iat_leeway_s: int = Field(default=60, ge=0)
    attestation_exp_leeway_s: int = Field(default=0, ge=0)
    # after Redis lost its replay records (docs/attestation.md "Replay protection across Redis
    # restarts") attestations issued before the loss plus this are refused. 0: fresh ones are
    # accepted at once; up to the future-iat leeway closes the gap left by clients whose clocks
    # run ahead, at the cost of refusing every client-signed attestation that long after a loss
    attestation_restart_leeway_s: int = Field(default=0, ge=0)
    gateway_attestation_ttl_s: int = Field(default=120, gt=0)

    access_token_ttl_s: int = Field(default=900, gt=0)
    token_signing_key: SecretStr | None = None
    # credential/account/key cache: minutes while the Redis invalidation subscription is up,
    # the short TTL while it is down (gateway/accounts/auth.py); negatives live the short TTL
    auth_cache_ttl_s: float = Field(default=300.0, ge=0)
    auth_cache_short_ttl_s: float = Field(default=5.0, ge=0)

    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=2, ge=1)

    privacy_policy_version: str = "2026-12-01"
    privacy_policy_effective_date: date = date(2026, 12, 1)
    privacy_policy_url: str = "/privacy-policy.html"

    # suspicious-usage limits (defaults and their reasons: docs/limits.md)
    limit_vin_burst: int = Field(default=40, gt=0)
    limit_vin_per_s: float = Field(default=5.0, gt=0)
    limit_score_threshold: int = Field(default=300, gt=0)
    limit_score_window_s: int = Field(default=3600, gt=0)
    limit_distinct_max: int = Field(default=500, gt=0)
    limit_seq_threshold: int = Field(default=8, gt=0)
    limit_seq_max_step: int = Field(default=20, gt=0)
    limit_first_block_s: int = Field(default=900, gt=0)
    limit_max_block_s: int = Field(default=86_400, gt=0)
    limit_shadow: str = ""  # comma list of: flood, guessing, distinct_vins, sequential
    limit_allow_list: str = ""  # comma list of account ids
    # who must query under an owner's grant (basis owner_granted; docs/attestation.md "Grant
    # policy"): nobody, accounts with an open admin flag, or everyone; shadow: counted and
    # flagged only, else refused with owner_grant_required
    grant_policy: Literal["off", "flagged", "all"] = "off"
    grant_policy_shadow: bool = True
    limit_ip_burst: int = Field(default=20, gt=0)
    limit_ip_per_s: float = Field(default=0.2, gt=0)
    limit_ip_fail_open: bool = True  # the per-account login throttle follows it too
    # per-account login throttling (gateway/accounts/throttle.py, docs/api.md "Login"): after
    # the free failures each failed login doubles the wait before the next attempt, from the base
    # to the cap; networks the account logged in from (IPv4 /24, IPv6 /48) get the larger budget
    login_free_failures: int = Field(default=5, ge=1)
    login_known_free_failures: int = Field(default=20, ge=1)
    login_base_delay_s: float = Field(default=1.0, gt=0)
    login_max_delay_s: float = Field(default=900.0, gt=0)  # ~4 guesses/hour/account at most
    login_window_s: float = Field(default=86_400.0, gt=0)  # failures forgotten after quiet
    login_known_network_ttl_s: float = Field(default=90 * 86_400.0, gt=0)
    login_known_networks_max: int = Field(default=10, ge=1)
    # owner grants (gateway/grants, docs/api.md "Grants"): a one-time code lives 10 minutes; a
    # grant runs at most a year; 20 declared vehicles per account; wrong codes are throttled
    # per account and per network: 10 per 15 minutes
    grant_code_ttl_s: int = Field(default=600, ge=1)
    grant_max_days: int = Field(default=365, ge=1)
    grant_max_vehicles: int = Field(default=20, ge=1)
    grant_code_max_failures: int = Field(default=10, ge=1)
    grant_code_window_s: int = Field(default=900, ge=1)
    # vehicle declarations per account in a day's window from the first (Redis, refused 429
    # vehicle_declarations_throttled): deleting and declaring again counts
    grant_max_declarations_per_day: int = Field(default=20, ge=1)
    # live grants (not revoked, not expired) per vehicle; refused 409 vehicle_grant_limit_reached
    grant_max_live_per_vehicle: int = Field(default=50, ge=1)
    # ended grants (revoked, or valid_until passed) are deleted this many days after their end
    # by each worker's maintenance (every grant_purge_interval_s); None: the search log's
    # retention ceiling (searchlog_retention_days + searchlog_grace_days, 213 days), so the
    # owner can see a grant's uses as long as the search log keeps them
    grant_retention_days: int | None = Field(default=None, ge=1)
    # its own interval, not the search log's: a deployment that purges the search log by cron
    # (searchlog_purge_interval_s=0) still purges ended grants; 0: never
    grant_purge_interval_s: float = Field(default=21_600, ge=0)
    # search log (docs/searchlog.md)
    pseudonym_keys_file: Path | None = None  # default: <secrets dir>/pseudonym_keys.json
    pseudonym_epoch: Literal["month", "week", "day"] = "month"  # key rotation period
    searchlog_retention_days: int = Field(default=183, ge=1)  # floor: kept at least this long
    searchlog_grace_days: int = Field(default=30, ge=0)  # ceiling = floor + grace
    searchlog_legal_hold: str = ""  # comma list of account ids whose rows survive purges
    searchlog_purge_interval_s: float = Field(default=21_600, ge=0)  # 0: `vin-gateway purge` only
    searchlog_consumer: bool = True  # each worker consumes the Redis stream (else a writer does)
    searchlog_stream: str = "vingw:searchlog"  # shards are <stream>:{0} .. <stream>:{N-1}
    # N streams, one per cluster slot, an account's events in one of them (docs/searchlog.md
    # "Shards"); changing N loses nothing: writers also read the shards of every N used before
    searchlog_shards: int = Field(default=8, ge=1, le=1024)
    # an erasure's tombstone (the writer drops queued events of an erased account) lives this
    # long: at least as long as an event can wait in a buffer or the stream
    searchlog_tombstone_ttl_s: float = Field(default=30 * 86_400.0, gt=0)
    searchlog_batch_size: int = Field(default=500, gt=0, le=5000)
    searchlog_max_buffer: int = Field(default=100_000, gt=0)
    searchlog_ship_interval_ms: float = Field(default=50.0, ge=0)
    searchlog_flush_interval_s: float = Field(default=0.2, gt=0)
    searchlog_claim_idle_s: float = Field(default=60.0, gt=0)

    migrate_on_start: bool | None = None
    # reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma list of IPs
    # or CIDRs); empty: none, the TCP peer is the client. The proxy must OVERWRITE the header.
    trusted_proxies: str = ""
    max_body_bytes: int = Field(default=16_384, gt=0)
    metrics_enabled: bool = True
    frontend_enabled: bool = True

    @field_validator("limit_shadow")
    @classmethod
    def _known_policies(cls, value: str) -> str:
        names = {n.strip() for n in value.split(",") if n.strip()}
        unknown = names - {"flood", "guessing", "distinct_vins", "sequential"}
        if unknown:
            raise ValueError(f"unknown limit policies in VINGW_LIMIT_SHADOW: {sorted(unknown)}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        trusted_networks(value)
        return value

    @field_validator("token_signing_key")
    @classmethod
    def _refuse_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value()
            if raw.strip().lower() in PLACEHOLDER_SECRETS or len(raw) < 32:
                raise ValueError(
                    "VINGW_TOKEN_SIGNING_KEY is a placeholder or shorter than 32 characters; "
                    "unset it to have one generated in the data dir"
                )
        return value

    @model_validator(mode="after")
    def _stores_apart(self) -> Settings:
        if same_database(self.accounts_url, self.search_log_url):
            raise ValueError(
                "VINGW_DATABASE_URL and VINGW_LOG_DATABASE_URL name the same database: the "
                "search log must be kept in a separate database from account data"
            )
        return self

    @cached_property
    def accounts_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'accounts.sqlite3'}"

    @cached_property
    def search_log_url(self) -> str:
        return self.log_database_url or f"sqlite:///{self.data_dir / 'searchlog.sqlite3'}"

    @property
    def run_migrations_on_start(self) -> bool:
        """Embedded defaults migrate at start-up; configured databases use `vin-gateway migrate`."""
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.database_url is None and self.log_database_url is None

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def pseudonym_keys_path(self) -> Path:
        return self.pseudonym_keys_file or self.secrets_dir / "pseudonym_keys.json"

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def grant_retention_s(self) -> int:
        """How long an ended grant is kept after its end (``grant_retention_days``, by default
        the search log's retention ceiling)."""
        days = self.grant_retention_days
        if days is None:
            days = self.searchlog_retention_days + self.searchlog_grace_days
        return days * 86_400
