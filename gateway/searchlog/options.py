"""The search log's tunables, read from ``Settings`` only.

Every default is written once, in ``gateway.config.Settings`` (``VINGW_SEARCHLOG_*``); the
dataclass has no defaults of its own, so there is nothing here to drift from them. The few
constants below are not settings: they are part of how the pipeline works.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Settings

GROUP = "searchlog-writers"  # every shard's consumer group
BLOCK_MS = 1000  # a consumer's blocking XREADGROUP (on one shard, when every shard was empty)
REFRESH_SHARDS_S = 5.0  # a consumer re-reads which shards exist (another N, the legacy stream)
RETRY_START_S = 0.1  # first backoff after a failed XADD or insert (then doubled)
MAX_BACKOFF_S = 10.0  # backoff ceiling of retries while Redis or the database is down
STOP_TASKS_S = 1.0  # how long stop() waits for cancelled loops before it flushes regardless
DRAIN_TIMEOUT_S = 10.0  # shutdown and flush() (export, erasure, stats) wait at most this long
DRAIN_CLAIM_IDLE_MS = 1000  # a drain takes over entries another consumer holds this long
# flush() waits one ship interval for other workers' outboxes, but never longer than this: a
# ship interval beyond it (a test or a deployment that ships only at shutdown) gives no bound
PEER_SHIP_WAIT_MAX_S = 1.0
# ... plus this allowance for the other shipper's XADD round trip and event-loop latency
SHIP_MARGIN_S = 0.05


@dataclass(frozen=True, slots=True)
class SearchLogOptions:
    batch_size: int
    max_buffer: int
    flush_interval_s: float  # embedded: the outbox writes to the database this often
    ship_interval_s: float  # Redis: buffering before one pipelined XADD batch
    consumer: bool  # Redis: run a stream consumer in this process
    stream: str  # the shards' common prefix
    shards: int  # N: events go to <stream>:{0} .. <stream>:{N-1}, by account
    tombstone_ttl_s: float  # an erasure's tombstone outlives any event still queued for it
    claim_idle_s: float  # pending entries idle this long are taken over
    retention_days: int  # floor: rows are kept at least this long
    grace_days: int  # ceiling = floor + grace: rows are gone by then
    legal_hold: frozenset[str]  # account ids held by configuration
    purge_interval_s: float  # 0: no periodic purge in this process

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchLogOptions:
        return cls(
            batch_size=settings.searchlog_batch_size,
            max_buffer=settings.searchlog_max_buffer,
            flush_interval_s=settings.searchlog_flush_interval_s,
            ship_interval_s=settings.searchlog_ship_interval_ms / 1000,
            consumer=settings.searchlog_consumer,
            stream=settings.searchlog_stream,
            shards=settings.searchlog_shards,
            tombstone_ttl_s=settings.searchlog_tombstone_ttl_s,
            claim_idle_s=settings.searchlog_claim_idle_s,
            retention_days=settings.searchlog_retention_days,
            grace_days=settings.searchlog_grace_days,
            legal_hold=frozenset(
                a.strip() for a in settings.searchlog_legal_hold.split(",") if a.strip()
            ),
            purge_interval_s=settings.searchlog_purge_interval_s,
        )

    @property
    def peer_ship_wait_s(self) -> float:
        """How long after a flush starts every other worker (configured alike) has XADDed
        what it had recorded before: a shipper ships one ship interval after the oldest row
        it holds was recorded (capped at ``PEER_SHIP_WAIT_MAX_S``), plus ``SHIP_MARGIN_S`` for
        that XADD's round trip. Redis being down at that worker is not covered."""
        return min(self.ship_interval_s, PEER_SHIP_WAIT_MAX_S) + SHIP_MARGIN_S
