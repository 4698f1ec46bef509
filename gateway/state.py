"""Everything the app factory's lifespan owns: engines, the Redis client, caches, services."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.accounts.auth import Authenticator
from gateway.accounts.service import AccountService
from gateway.catalogue.backends import Catalogue, EmbeddedBackend, UpstreamBackend
from gateway.config import Settings
from gateway.db import Database, migrate
from gateway.kv import make_redis
from gateway.limits.limiter import Limiter, LimitPolicy
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
    redis: Any
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

    async def close(self) -> None:
        await self.searchlog.stop()
        await self.catalogue.close()
        await self.accounts_db.dispose()
        await self.searchlog_db.dispose()
        await self.redis.aclose()


def _names(csv: str) -> frozenset[str]:
    return frozenset(n.strip() for n in csv.split(",") if n.strip())


def limit_policy(settings: Settings) -> LimitPolicy:
    return LimitPolicy(
        capacity=settings.limit_vin_burst,
        refill_per_s=settings.limit_vin_per_s,
        score_threshold=settings.limit_score_threshold,
        score_window_s=settings.limit_score_window_s,
        distinct_max=settings.limit_distinct_max,
        seq_threshold=settings.limit_seq_threshold,
        seq_max_step=settings.limit_seq_max_step,
        first_block_s=settings.limit_first_block_s,
        max_block_s=settings.limit_max_block_s,
        shadow=_names(settings.limit_shadow),
        allow_list=_names(settings.limit_allow_list),
    )


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

    accounts_db = Database(settings.accounts_url)
    searchlog_db = Database(settings.search_log_url)
    redis = make_redis(settings)
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
    accounts = AccountService(accounts_db, passwords, settings)
    auth = Authenticator(
        accounts,
        tokens,
        ttl_s=settings.auth_cache_ttl_s,
        gateway_keys={GATEWAY_ATTESTATION_KID: gateway_key},
    )
    accounts.on_change = auth.forget
    verifier = AttestationVerifier(
        resolve_key=auth.attestation_key,
        issuer=settings.issuer,
        audience=settings.audience,
        max_lifetime_s=settings.attestation_max_lifetime_s,
        future_iat_leeway_s=settings.attestation_future_iat_leeway_s,
        exp_leeway_s=settings.attestation_exp_leeway_s,
    )
    if settings.catalogue_url:
        backend: Any = UpstreamBackend(
            settings.catalogue_url,
            timeout_s=settings.catalogue_timeout_s,
            retries=settings.catalogue_retries,
        )
    else:
        backend = EmbeddedBackend()
    catalogue = Catalogue(backend, cache_size=settings.catalogue_cache_size)
    searchlog = SearchLog.from_settings(settings, searchlog_db)
    await searchlog.start()
    return AppState(
        settings=settings,
        accounts_db=accounts_db,
        searchlog_db=searchlog_db,
        redis=redis,
        limiter=Limiter(redis, limit_policy(settings), key=limiter_key),
        ip_policy=LimitPolicy(
            name="ip", capacity=settings.limit_ip_burst, refill_per_s=settings.limit_ip_per_s
        ),
        passwords=passwords,
        tokens=tokens,
        accounts=accounts,
        auth=auth,
        verifier=verifier,
        gateway_attestation_key=gateway_key,
        catalogue=catalogue,
        searchlog=searchlog,
    )
