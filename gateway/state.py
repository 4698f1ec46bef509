"""Everything the app factory's lifespan owns: engines, the Redis client, caches, services."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from gateway.accounts.auth import Authenticator
from gateway.accounts.invalidation import InvalidationBus
from gateway.accounts.models import Flag
from gateway.accounts.service import AccountService
from gateway.accounts.throttle import LoginThrottle
from gateway.catalogue.backends import Catalogue, build_catalogue
from gateway.config import Settings
from gateway.db import Database, migrate
from gateway.grants.cache import GrantCache
from gateway.grants.models import GrantResolver
from gateway.grants.service import GrantService
from gateway.grants.throttle import DeclarationThrottle, RedeemThrottle
from gateway.kv import (
    Durability,
    Kv,
    RedisNotDurable,
    make_redis,
    probe_durability,
    report_durability,
)
from gateway.limits import embedded as embedded_replay
from gateway.limits.consequences import Consequences, FlagFinding
from gateway.limits.limiter import Limiter, LimitPolicy
from gateway.lookups.service import VinQuery
from gateway.pipelined import make_pipelined
from gateway.searchlog.service import SearchLog
from gateway.secrets import load_or_create
from gateway.security import jws
from gateway.security.attestation import AttestationVerifier
from gateway.security.passwords import Passwords
from gateway.security.tokens import AccessTokens

log = logging.getLogger("vin_gateway")

GATEWAY_ATTESTATION_KID = "gw-att-1"
ACCESS_TOKEN_KID = "gw-at-1"  # noqa: S105 - a key id


@dataclass
class AppState:
    settings: Settings
    accounts_db: Database
    searchlog_db: Database
    redis: Kv  # one server, the embedded stand-in, or a RedisCluster
    limiter: Limiter
    ip_policy: LimitPolicy
    passwords: Passwords
    tokens: AccessTokens
    accounts: AccountService
    auth: Authenticator
    verifier: AttestationVerifier
    gateway_attestation_key: jws.BoundKey
    catalogue: Catalogue
    searchlog: SearchLog
    consequences: Consequences
    vin_query: VinQuery
    grant_service: GrantService
    grants: GrantResolver  # the per-worker grant cache the VIN path resolves grants through
    invalidations: InvalidationBus | None = None
    redis_durability: Durability | None = None  # the start-up check (None: embedded)

    async def close(self) -> None:
        await self.consequences.drain()
        await self.grant_service.stop()  # before the bus: a purge in flight may still publish
        if self.invalidations is not None:
            await self.invalidations.close()
        if self.settings.embedded_redis:  # its replay records for the next start
            await embedded_replay.save(self.settings.data_dir, self.limiter)
        await self.searchlog.stop()
        await self.catalogue.close()
        await self.accounts_db.dispose()
        await self.searchlog_db.dispose()
        await self.limiter.aclose()
        await self.redis.aclose()


def app_state(connection: HTTPConnection) -> AppState:
    """The lifespan's state, from a request (the ``StateDep`` dependency)."""
    return connection.app.state.gw  # type: ignore[no-any-return]


def run_migrations(settings: Settings) -> None:
    migrate("accounts", settings.accounts_url)
    migrate("searchlog", settings.search_log_url)


async def build_state(settings: Settings, *, migrate_on_start: bool = True) -> AppState:
    """Open every resource. Embedded defaults migrate their SQLite files at start-up."""
    if migrate_on_start:
        run_migrations(settings)
    secrets_dir = settings.secrets_dir
    if settings.token_signing_key is not None:
        token_secret = settings.token_signing_key.get_secret_value().encode()
    else:
        token_secret = load_or_create(secrets_dir, "token_signing.key")
    access_key = jws.hmac_key(ACCESS_TOKEN_KID, token_secret, owner=settings.issuer)
    attestation_secret = load_or_create(secrets_dir, "attestation_signing.key")
    limiter_key = load_or_create(secrets_dir, "limiter_pseudonym.key")
    gateway_key = jws.hmac_key(GATEWAY_ATTESTATION_KID, attestation_secret, owner=settings.issuer)
    vehicle_key = load_or_create(secrets_dir, "vehicle_pseudonym.key")  # never rotated
    grant_code_key = load_or_create(secrets_dir, "grant_code.key")

    accounts_db = Database(settings.accounts_url)
    searchlog_db = Database(settings.search_log_url)
    redis = make_redis(settings)
    durability = None
    if settings.redis_url is not None:  # the embedded stand-in lives and dies with the process
        durability = await probe_durability(settings)
        try:
            report_durability(durability, required=settings.redis_require_durable)
        except RedisNotDurable:
            await redis.aclose()
            raise
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    tokens = AccessTokens(
        access_key,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_s=settings.access_token_ttl_s,
    )
    login_throttle = LoginThrottle(redis, settings, key=limiter_key)
    accounts = AccountService(accounts_db, passwords, settings, login_throttle=login_throttle)
    auth = Authenticator(
        accounts,
        tokens,
        ttl_s=settings.auth_cache_ttl_s,
        short_ttl_s=settings.auth_cache_short_ttl_s,
        gateway_keys={GATEWAY_ATTESTATION_KID: gateway_key},
    )
    accounts.on_change = auth.forget
    invalidations = InvalidationBus(redis, auth, timeout_s=settings.redis_timeout_s)
    accounts.notify = invalidations.publish
    verifier = AttestationVerifier(
        resolve_key=auth.attestation_key,
        issuer=settings.issuer,
        audience=settings.audience,
        max_lifetime_s=settings.attestation_max_lifetime_s,
        future_iat_leeway_s=settings.attestation_future_iat_leeway_s,
        exp_leeway_s=settings.attestation_exp_leeway_s,
        restart_leeway_s=settings.attestation_restart_leeway_s,
    )
    catalogue = build_catalogue(settings)
    searchlog = SearchLog.from_settings(settings, searchlog_db)
    admission = (
        make_pipelined(
            settings.redis_url, timeout_s=settings.redis_timeout_s, cluster=settings.redis_cluster
        )
        if settings.redis_url
        else None
    )
    limiter = Limiter(
        redis, LimitPolicy.from_settings(settings), key=limiter_key, admission=admission
    )
    accounts.forget_limits = limiter.forget_account  # erasure deletes the account's keys

    async def flag(finding: FlagFinding) -> None:
        await accounts.add_flag(Flag(**dataclasses.asdict(finding)))

    if settings.embedded_redis:  # the stand-in died with the previous process: its records
        await embedded_replay.restore(settings.data_dir, limiter)
    consequences = Consequences(limiter, flag)
    grant_service = GrantService(
        accounts_db,
        settings,
        vehicle_key=vehicle_key,
        code_key=grant_code_key,
        throttle=RedeemThrottle(redis, settings, key=limiter_key),
        declarations=DeclarationThrottle(redis, settings),
        searchlog=searchlog,
        uses=limiter.grant_uses,
        forget_uses=limiter.forget_grant_uses,
        on_change=auth.forget,  # the grant cache listens to the Authenticator's invalidations
        notify=invalidations.publish,
    )
    grants = GrantCache(grant_service.state, auth)
    vin_query = VinQuery(
        settings=settings,
        auth=auth,
        verifier=verifier,
        limiter=limiter,
        consequences=consequences,
        catalogue=catalogue,
        searchlog=searchlog,
        gateway_attestation_key=gateway_key,
        grants=grants,
        vehicle_key=vehicle_key,
    )
    await searchlog.start()
    grant_service.start()  # the purge of ended grants
    invalidations.start()
    return AppState(
        settings=settings,
        accounts_db=accounts_db,
        searchlog_db=searchlog_db,
        redis=redis,
        limiter=limiter,
        ip_policy=LimitPolicy.per_network(settings),
        passwords=passwords,
        tokens=tokens,
        accounts=accounts,
        auth=auth,
        verifier=verifier,
        gateway_attestation_key=gateway_key,
        catalogue=catalogue,
        searchlog=searchlog,
        consequences=consequences,
        vin_query=vin_query,
        grant_service=grant_service,
        grants=grants,
        invalidations=invalidations,
        redis_durability=durability,
    )
