"""Prometheus metrics of the search-log pipeline (no VIN, no account, no pseudonym as a label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS = Counter(
    "vingw_searchlog_events_total",
    "Search-log events by pipeline stage: recorded (request path), queued (XADD to the "
    "stream), written (batch inserted), reclaimed (pending entries claimed from another "
    "consumer), dropped (in-process buffer full)",
    ["stage"],
)
FAILURES = Counter(
    "vingw_searchlog_failures_total",
    "Failed search-log operations by stage: queue (Redis XADD), read (Redis XREADGROUP/XACK), "
    "database (batch insert; retried with backoff)",
    ["stage"],
)
BUFFERED = Gauge(
    "vingw_searchlog_buffered_events",
    "Events waiting in this process's buffer (before the stream, or before the database in "
    "embedded mode)",
)
DATABASE_DOWN = Gauge(
    "vingw_searchlog_database_unavailable",
    "1 while search-log inserts fail and are being retried with backoff",
)
PURGED = Counter("vingw_searchlog_purged_rows_total", "Search-log rows deleted by retention purges")
