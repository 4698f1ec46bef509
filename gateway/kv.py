"""The Redis client: a real server when ``VINGW_REDIS_URL`` is set, else an in-process stand-in.

The stand-in is fakeredis with Lua (lupa), so the same Lua scripts and commands run on both:
one implementation of the logic, not two. It is not shared between processes, which is why
embedded mode refuses more than one worker.

A real Redis is checked at start-up (``redis_durability``, ``report_durability``): it must
persist its data (AOF or RDB) and never evict keys (``maxmemory-policy noeviction``), and the
admission script needs INFO. What it finds is logged and exported as
``vingw_redis_durability{check}``; with ``VINGW_REDIS_REQUIRE_DURABLE=true`` a problem refuses
the start. Why these settings: docs/deploy.md, "Redis".

With ``VINGW_REDIS_CLUSTER=true`` the URL names one node of a Redis Cluster and the client is
redis-py's ``RedisCluster``: it discovers the other masters and routes each command by its
key's hash slot (every key the gateway uses is hash-tagged, so a script's or a pipeline's keys
share one slot), following MOVED and ASK. The same bounds as on one node: one attempt, no
backoff, the configured timeout; ``cluster_state`` checks every node's CLUSTER INFO for
``/readyz``. The start-up durability check runs on every master (docs/deploy.md, "Redis
Cluster").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from gateway.config import Settings

log = logging.getLogger("vin_gateway.redis")

DURABILITY = Gauge(
    "vingw_redis_durability",
    "Start-up check of the configured Redis, by check: persistence (AOF or RDB), eviction "
    "(maxmemory-policy noeviction), info (INFO allowed, for the replay-window check). "
    "1 passed, 0 failed, -1 could not be checked",
    ["check"],
    multiprocess_mode="min",
)


class _HiredisPacking:
    """Commands packed by hiredis's C packer instead of redis-py's Python loop: the admission
    call has 31 arguments, and packing them in Python cost more client time than the rest of
    the call. The same wire format (RESP arrays of bulk strings); a command name with a space
    ("CONFIG GET") is split as redis-py splits it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        return [hiredis.pack_command(args)]


class PackedConnection(_HiredisPacking, Connection):
    pass


class PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_PACKED: dict[type, type] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


#: The gateway's client: one server (or the embedded stand-in), or a Redis Cluster.
Kv = aioredis.Redis | RedisCluster


class BoundedCluster(RedisCluster):
    """``RedisCluster`` whose "no node reachable" (``RedisClusterException``, which is not a
    ``RedisError``) is a ``ConnectionError``, so every caller's ``except RedisError`` (fail
    closed with 503, or fail open where configured) handles a dead cluster as a dead Redis."""

    async def initialize(self, *args: Any, **kwargs: Any) -> BoundedCluster:
        try:
            await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError("Redis Cluster: no node reachable") from exc
        return self

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self._initialize:
                # before redis-py's command-policy lookup, which otherwise runs on the
                # startup node concurrently with the first slot-map load: measured, a cold
                # client's first concurrent calls failed with ConnectionError (redis-py 8.1)
                await self.initialize()
            return await super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError("Redis Cluster: the command could not be routed") from exc


def cluster_client(url: str, *, timeout_s: float, health_check_interval: int = 30) -> RedisCluster:
    """A ``RedisCluster`` seeded by the node ``url`` names, bounded as the single-node client:
    one attempt per command (no retry after a connection error or a timeout, no backoff), the
    timeout on connecting and on every reply. MOVED/ASK redirections are followed (a slot
    migrating is not a failure), each bounded by the same socket timeout."""
    return BoundedCluster.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 0),
        # a master that is down costs its own slots only: the others keep being served (the
        # nodes answer CLUSTERDOWN themselves when cluster-require-full-coverage says so)
        require_full_coverage=False,
    )


def make_client(url: str, *, timeout_s: float, cluster: bool) -> Kv:
    """A plain redis-py client for ``url`` (one server, or the cluster it belongs to), for the
    callers that keep their own pool (the search-log stream's blocking reads)."""
    if cluster:
        return cluster_client(url, timeout_s=timeout_s)
    return aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def make_redis(settings: Settings) -> Kv:
    if settings.redis_url is None:
        if settings.redis_cluster:
            raise ValueError("VINGW_REDIS_CLUSTER=true needs VINGW_REDIS_URL (any one node)")
        import fakeredis

        return fakeredis.FakeAsyncRedis()  # a redis.asyncio.Redis subclass
    if settings.redis_cluster:
        return cluster_client(settings.redis_url, timeout_s=settings.redis_timeout_s)
    # Bounded: one attempt, no backoff, so a dead Redis fails a request within the timeout.
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )
    # the URL chose plain, TLS or Unix-socket connections (from_url overrides any class passed
    # in); keep that choice, packed by hiredis. No connection exists yet.
    pool = client.connection_pool
    pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
    return client


class RedisNotDurable(RuntimeError):
    """The configured Redis failed the start-up check and VINGW_REDIS_REQUIRE_DURABLE is on."""


REQUIRE_SETTING = "VINGW_REDIS_REQUIRE_DURABLE"


@dataclass(frozen=True, slots=True)
class Durability:
    """What the start-up check found. ``None``: could not be seen."""

    source: str  # "config" (CONFIG GET), "info" (CONFIG refused: INFO), "unreachable"
    aof: bool | None = None
    rdb: bool | None = None  # RDB save points configured (not visible through INFO)
    appendfsync: str | None = None
    eviction_policy: str | None = None
    info_allowed: bool | None = None

    @property
    def persistence_ok(self) -> bool | None:
        if self.aof or self.rdb:
            return True
        if self.aof is False and self.rdb is False:
            return False
        return None

    @property
    def eviction_ok(self) -> bool | None:
        return None if self.eviction_policy is None else self.eviction_policy == "noeviction"

    def problems(self) -> list[str]:
        """What breaks the no-loss promise, each naming the Redis setting to change."""
        if self.source == "unreachable":
            return ["Redis did not answer the start-up check: persistence and eviction unverified"]
        found = []
        if self.persistence_ok is False:
            found.append(
                'Redis persists nothing (appendonly no, save ""): a restart loses the '
                "search-log events queued in its stream and the limiter's blocks; set "
                "appendonly yes (appendfsync everysec or always)"
            )
        elif self.persistence_ok is None:
            found.append(
                "CONFIG GET is not allowed and INFO shows AOF off, so RDB snapshots cannot be "
                "seen: set appendonly yes, or allow CONFIG GET to the gateway's Redis user"
            )
        if self.eviction_ok is False:
            found.append(
                f"maxmemory-policy is {self.eviction_policy}: Redis evicts keys under memory "
                "pressure (replay records, limiter state, queued search-log events); set "
                "maxmemory-policy noeviction"
            )
        elif self.eviction_ok is None:
            found.append("maxmemory-policy could not be read: allow CONFIG GET or INFO")
        if self.info_allowed is False:
            found.append(
                "INFO is not allowed to the gateway's Redis user: the admission script reads "
                "INFO server to tell a restarted Redis; allow INFO"
            )
        return found

    def warnings(self) -> list[str]:
        """Durable, with a window of loss worth knowing."""
        found = []
        if self.rdb and not self.aof:
            found.append(
                "Redis persists RDB snapshots only: a crash loses what was written since the "
                "last snapshot (queued search-log events included); appendonly yes is better"
            )
        if self.aof and self.appendfsync == "no":
            found.append(
                "appendfsync no: a crash can lose the last seconds of writes the OS had not "
                "flushed; appendfsync everysec or always"
            )
        return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def redis_durability(client: aioredis.Redis) -> Durability:
    """CONFIG GET where allowed (managed Redis often forbids it), else INFO persistence and
    INFO memory. Never raises: an unreachable Redis is a finding too."""
    try:
        try:
            info_allowed = bool(await client.info("server"))
        except ResponseError:  # NOPERM, or a renamed command
            info_allowed = False
        try:
            config: dict[str, str] = {}
            for name in ("appendonly", "appendfsync", "save", "maxmemory-policy"):
                found = await client.config_get(name)
                config.update({_text(k): _text(v) for k, v in found.items()})
            return Durability(
                source="config",
                aof=config.get("appendonly") == "yes",
                rdb=bool(config.get("save", "").strip()),
                appendfsync=config.get("appendfsync"),
                eviction_policy=config.get("maxmemory-policy"),
                info_allowed=info_allowed,
            )
        except ResponseError:
            pass
        try:
            persistence = await client.info("persistence")
            memory = await client.info("memory")
        except ResponseError:
            return Durability(source="info", info_allowed=info_allowed)
        aof = int(persistence.get("aof_enabled", 0)) == 1
        policy = memory.get("maxmemory_policy")
        return Durability(
            source="info",
            aof=aof,
            rdb=None,  # the RDB schedule is not in INFO
            eviction_policy=_text(policy) if policy is not None else None,
            info_allowed=info_allowed,
        )
    except (RedisError, OSError):
        return Durability(source="unreachable")


def report_durability(found: Durability, *, required: bool) -> None:
    """Log and export the finding; raise ``RedisNotDurable`` when required and not durable."""
    for check, ok in (
        ("persistence", found.persistence_ok),
        ("eviction", found.eviction_ok),
        ("info", found.info_allowed),
    ):
        DURABILITY.labels(check).set(-1 if ok is None else int(ok))
    problems = found.problems()
    if problems and required:
        raise RedisNotDurable(
            "refusing to start: " + "; ".join(problems) + f" (or set {REQUIRE_SETTING}=false "
            "to start anyway, losing what docs/deploy.md lists)"
        )
    for problem in problems:
        log.error("Redis is not durable: %s (%s=true refuses to start)", problem, REQUIRE_SETTING)
    for warning in found.warnings():
        log.warning("Redis durability: %s", warning)


async def cluster_state(client: RedisCluster) -> str:
    """ "ok" when every known node answers CLUSTER INFO with ``cluster_state:ok``, else
    "cluster_state_fail" (a node that does not answer raises, as PING would)."""
    await client.initialize()  # no-op once the slot map is known
    for node in client.get_nodes():
        info = await client.cluster_info(target_nodes=node)
        if _text(info.get("cluster_state", "")) != "ok":
            return "cluster_state_fail"
    return "ok"


def _worst(found: list[Durability]) -> Durability:
    """The finding of several masters as one: each check as bad as its worst node's."""
    if any(d.source == "unreachable" for d in found):
        return Durability(source="unreachable")

    def worst(values: list[Any]) -> Any:
        if False in values:
            return False
        return None if None in values else values[0]

    policies = {d.eviction_policy for d in found}
    policy = (
        None if None in policies else next((p for p in policies if p != "noeviction"), "noeviction")
    )
    fsyncs = {d.appendfsync for d in found}
    return Durability(
        source="config" if all(d.source == "config" for d in found) else "info",
        aof=worst([d.aof for d in found]),
        rdb=worst([d.rdb for d in found]),
        appendfsync="no" if "no" in fsyncs else found[0].appendfsync,
        eviction_policy=policy,
        info_allowed=worst([d.info_allowed for d in found]),
    )


async def cluster_durability(client: RedisCluster, settings: Settings) -> Durability:
    """The start-up check on every master of a cluster (each holds its own slots' data), each
    on a client of its own with the URL's credentials and TLS options."""
    assert settings.redis_url is not None
    try:
        await client.initialize()
        primaries = [(n.host, n.port) for n in client.get_primaries()]
    except (RedisError, OSError):
        return Durability(source="unreachable")
    found = []
    for host, port in primaries:
        options: dict[str, Any] = {
            **parse_url(settings.redis_url),
            "host": host,
            "port": port,
            "db": 0,
        }
        if options.pop("connection_class", None) is SSLConnection:
            options["ssl"] = True
        single = aioredis.Redis(
            **options,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
        )
        try:
            found.append(await redis_durability(single))
        finally:
            await single.aclose()
    return _worst(found) if found else Durability(source="unreachable")


async def probe_durability(settings: Settings) -> Durability:
    """The check on a client of its own, closed after it (the gateway's pool stays untouched:
    its first connection is the invalidation subscription's)."""
    client = make_redis(settings)
    try:
        if isinstance(client, RedisCluster):
            return await cluster_durability(client, settings)
        return await redis_durability(client)
    finally:
        await client.aclose()


async def durability_refusal(settings: Settings) -> str | None:
    """The start-up refusal for ``vin-gateway serve`` (checked before any worker starts), or
    None when Redis is embedded, durable, or not required to be."""
    if settings.redis_url is None or not settings.redis_require_durable:
        return None
    try:
        report_durability(await probe_durability(settings), required=True)
    except RedisNotDurable as exc:
        return str(exc)
    return None
