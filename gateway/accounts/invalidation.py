"""Cross-worker invalidation of the request path's caches, over Redis pub/sub.

Channel ``vingw:auth:invalidate:<db>`` (``<db>``: the Redis database number of
``VINGW_REDIS_URL``, 0 by default; pub/sub channels are server-wide, so deployments sharing a
server on different databases do not hear each other); each message is a JSON object of ids
only::

    {"v": 1, "account": "acct_0123456789", "reason": "api_key_revoked", "key": "key_0a1b2c3d4e5f"}

``reason`` is one of ``REASONS``; ``key`` is the API key id or attestation kid concerned, or null.
No email, token, credential or VIN ever travels (``Invalidation.decode`` refuses anything but
id-shaped strings, and nothing else is ever encoded).

Every worker runs ``InvalidationBus.start()`` at start-up (a task owned by the app state,
cancelled and awaited by ``close()``); a message drops the account's cached state, credentials
and keys. The worker that made the change has already dropped its own (``AccountService``
calls ``on_change`` before publishing). On embedded defaults the client is the in-process
fakeredis: the same code runs, and local invalidation is what matters there.

While the subscription is down (Redis unreachable, connection killed, no answer to the
periodic PING) ``Authenticator.live`` is False and cached entries are served only while younger
than the short TTL; once subscribed again, the whole cache is cleared before ``live`` turns
True, since messages published meanwhile were lost. A failed publish is retried in the
background a few times (the change is committed already; it is never failed for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.accounts.auth import Authenticator

log = logging.getLogger("vin_gateway.auth")

CHANNEL = "vingw:auth:invalidate"
REASONS = frozenset(
    {
        "api_key_revoked",
        "attestation_key_revoked",
        "status_changed",
        "consent_accept",
        "consent_withdraw",
        "account_deleted",
        "account_updated",
    }
)
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PUBLISH_RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
MAX_PENDING_RETRIES = 1000


def channel_for(redis: Any) -> str:
    """The channel of the Redis database the client uses."""
    pool = getattr(redis, "connection_pool", None)
    db = getattr(pool, "connection_kwargs", {}).get("db", 0) if pool is not None else 0
    return f"{CHANNEL}:{int(db or 0)}"


@dataclass(frozen=True, slots=True)
class Invalidation:
    account: str
    reason: str
    key: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(
            {"v": 1, "account": self.account, "reason": self.reason, "key": self.key}
        )

    @classmethod
    def decode(cls, data: Any) -> Invalidation | None:
        """The message, or None for anything that is not an ids-only invalidation."""
        try:
            obj = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            return None
        if not isinstance(obj, dict) or obj.get("v") != 1:
            return None
        account, reason, key = obj.get("account"), obj.get("reason"), obj.get("key")
        if not isinstance(account, str) or not _ID.fullmatch(account) or reason not in REASONS:
            return None
        if key is not None and (not isinstance(key, str) or not _ID.fullmatch(key)):
            return None
        return cls(account, reason, key)


class InvalidationBus:
    def __init__(
        self,
        redis: Any,
        auth: Authenticator,
        *,
        channel: str | None = None,
        timeout_s: float = 1.0,
        ping_interval_s: float = 5.0,
        reconnect_max_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.auth = auth
        self.channel = channel or channel_for(redis)
        self.timeout_s = timeout_s
        self.ping_interval_s = ping_interval_s
        self.reconnect_max_s = reconnect_max_s
        self._task: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()
        self._closing = False
        self.connects = 0  # how many times the subscription was (re)established
        self.received = 0

    # --- publishing -----------------------------------------------------------------------

    async def publish(self, account_id: str, reason: str, key_id: str | None = None) -> None:
        """Tell every worker (this one's caches were dropped by the caller). Never raises."""
        message = Invalidation(account_id, reason, key_id)
        if Invalidation.decode(message.encode()) is None:
            raise ValueError("an invalidation carries ids only")
        if await self._publish_once(message.encode()):
            return
        if len(self._retries) < MAX_PENDING_RETRIES:
            task = asyncio.create_task(self._publish_later(message.encode()))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
        else:
            log.warning("auth cache invalidation dropped: too many publishes pending")

    async def _publish_once(self, data: bytes) -> bool:
        try:
            await asyncio.wait_for(self.redis.publish(self.channel, data), self.timeout_s)
        except Exception as exc:  # Redis down: retried, never fails the change
            log.warning("auth cache invalidation not published (%s)", type(exc).__name__)
            return False
        return True

    async def _publish_later(self, data: bytes) -> None:
        for delay in PUBLISH_RETRY_DELAYS_S:
            await asyncio.sleep(delay)
            if await self._publish_once(data):
                return
        log.error("auth cache invalidation lost after retries; other workers catch up on TTL")

    # --- subscribing ----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="auth-invalidation")

    async def close(self) -> None:
        self._closing = True
        tasks = [t for t in [self._task, *self._retries] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self.auth.live = False

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            connects = self.connects
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: resubscribe from scratch
                log.warning("auth cache invalidation subscription lost (%s)", type(exc).__name__)
                # On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives as
                # its inner call fails: the failure comes out instead, and without this check
                # the loop would retry forever under a close() that waits for it.
                task = asyncio.current_task()
                if self._closing or (task is not None and task.cancelling()):
                    raise asyncio.CancelledError() from exc
            finally:
                self.auth.live = False  # entries now live the short TTL only
            backoff = 0.1 if self.connects != connects else min(backoff * 2, self.reconnect_max_s)
            await asyncio.sleep(backoff)

    async def _pubsub(self) -> Any:
        """A pub/sub connection. On a Redis Cluster (``VINGW_REDIS_CLUSTER``) classic PUBLISH
        reaches every node, so any one node will do: a random one of the slot map (read first
        if need be), so a subscription lost with its node comes back on another."""
        if hasattr(self.redis, "get_random_node"):  # redis.asyncio.cluster.RedisCluster
            await asyncio.wait_for(self.redis.initialize(), self.timeout_s)
            return self.redis.pubsub(node=self.redis.get_random_node())
        return self.redis.pubsub()

    async def _listen(self) -> None:
        pubsub = await self._pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(self.channel), self.timeout_s)
            last_seen = last_ping = time.monotonic()
            while True:
                message = await pubsub.get_message(timeout=min(1.0, self.ping_interval_s))
                now = time.monotonic()
                if message is not None:
                    last_seen = now
                    self._handle(message)
                if now - last_ping >= self.ping_interval_s:
                    last_ping = now
                    await asyncio.wait_for(pubsub.ping(), self.timeout_s)
                if now - last_seen > self.ping_interval_s + 2 * self.timeout_s:
                    raise TimeoutError("no answer to PING on the subscription")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self.timeout_s)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            # (re)subscribed: anything published while we were away is lost, so start afresh
            self.auth.clear()
            self.auth.live = True
            self.connects += 1
        elif kind == "message":
            found = Invalidation.decode(message.get("data"))
            if found is not None:
                self.received += 1
                self.auth.forget(found.account)
