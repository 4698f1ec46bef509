"""All queries on the search-log database.

On PostgreSQL ``search_event`` is partitioned by month on ``at`` (``search_event_pYYYYMM``):
the writer creates a month's partition before the first insert into it, and purging drops whole
partitions. SQLite keeps a plain table and purging deletes rows.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, not_, or_, text, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.searchlog.models import LegalHold, SearchEvent
from gateway.searchlog.pseudonym import month_start, next_month

PARTITION_RE = re.compile(r"^search_event_p(\d{4})(\d{2})$")
#: one advisory lock id for partition DDL and purges (concurrent workers, writers, cron jobs)
ADVISORY_LOCK = 0x5EA2C410

Subject = tuple[str, str]  # (key_epoch, account_pseudonym)


def partition_name(start: int) -> str:
    return "search_event_p" + datetime.fromtimestamp(start, UTC).strftime("%Y%m")


def partition_start(name: str) -> int | None:
    m = PARTITION_RE.match(name)
    if m is None:
        return None
    return int(datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC).timestamp())


class SearchLogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        bind = session.bind
        self.dialect = bind.dialect.name if bind is not None else "sqlite"

    async def _execute(self, statement: Any) -> Any:
        """Core SQL (text, DDL, aggregates) on the session's connection and transaction."""
        connection = await self.session.connection()
        return await connection.execute(statement)

    @property
    def partitioned(self) -> bool:
        return self.dialect == "postgresql"

    # --- writes -------------------------------------------------------------------------------

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert a batch; rows whose ``(event_id, at)`` is already stored are skipped."""
        if not rows:
            return
        if self.partitioned:
            await self.ensure_partitions(month_start(r["at"]) for r in rows)
            stmt: Any = pg_insert(SearchEvent).on_conflict_do_nothing()
        else:
            stmt = sqlite_insert(SearchEvent).on_conflict_do_nothing()
        connection = await self.session.connection()
        await connection.execute(stmt, list(rows))
        await self.session.commit()

    async def partitions(self) -> dict[str, int]:
        """PostgreSQL: the monthly partitions of search_event, name -> start (epoch seconds)."""
        result = await self._execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'search_event'::regclass"
            )
        )
        out = {}
        for (name,) in result.all():
            start = partition_start(name)
            if start is not None:
                out[name] = start
        return out

    async def ensure_partitions(self, starts: Iterable[int]) -> list[str]:
        """PostgreSQL: create the monthly partitions starting at ``starts`` that do not exist."""
        wanted = {partition_name(s): s for s in starts}
        missing = {n: s for n, s in wanted.items() if n not in await self.partitions()}
        if not missing:
            return []
        # serialize DDL with other workers (CREATE ... IF NOT EXISTS alone can still race)
        await self._execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})"))
        existing = await self.partitions()
        created = []
        for name, start in sorted(missing.items()):
            if name in existing:
                continue
            await self._execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF search_event "
                    f"FOR VALUES FROM ({start}) TO ({next_month(start)})"
                )
            )
            created.append(name)
        await self.session.commit()
        return created

    # --- data-subject queries -----------------------------------------------------------------

    @staticmethod
    def _subject(pseudonyms: dict[str, str]) -> Any:
        return or_(
            *(
                (col(SearchEvent.key_epoch) == epoch)
                & (col(SearchEvent.account_pseudonym) == pseudonym)
                for epoch, pseudonym in pseudonyms.items()
            )
        )

    @staticmethod
    def _held(held: Collection[Subject]) -> Any:
        if not held:
            return None
        return or_(
            *(
                (col(SearchEvent.key_epoch) == epoch)
                & (col(SearchEvent.account_pseudonym) == pseudonym)
                for epoch, pseudonym in held
            )
        )

    async def rows_for(self, pseudonyms: dict[str, str]) -> Sequence[SearchEvent]:
        if not pseudonyms:
            return []
        result = await self.session.exec(
            select(SearchEvent)
            .where(self._subject(pseudonyms))
            .order_by(col(SearchEvent.at), col(SearchEvent.id))
        )
        return list(result.all())

    async def delete_for(
        self, pseudonyms: dict[str, str], *, keep: Collection[Subject] = ()
    ) -> int:
        if not pseudonyms:
            return 0
        where = self._subject(pseudonyms)
        held = self._held(keep)
        if held is not None:
            where = and_(where, not_(held))
        result = await self.session.exec(delete(SearchEvent).where(where))
        await self.session.commit()
        return int(result.rowcount or 0)

    async def count(self, *, epoch: str | None = None) -> int:
        query = select(func.count()).select_from(SearchEvent)
        if epoch is not None:
            query = query.where(col(SearchEvent.key_epoch) == epoch)
        result = await self.session.exec(query)
        return int(result.one())

    async def epochs_with_rows(self) -> set[str]:
        result = await self.session.exec(select(col(SearchEvent.key_epoch)).distinct())
        return set(result.all())

    # --- legal holds --------------------------------------------------------------------------

    async def holds(self) -> set[Subject]:
        result = await self.session.exec(select(LegalHold))
        return {(h.key_epoch, h.account_pseudonym) for h in result.all()}

    async def add_holds(self, pseudonyms: dict[str, str], at: int) -> int:
        existing = await self.holds()
        new = [
            LegalHold(key_epoch=e, account_pseudonym=p, created_at=at)
            for e, p in pseudonyms.items()
            if (e, p) not in existing
        ]
        self.session.add_all(new)
        await self.session.commit()
        return len(new)

    async def remove_holds(self, pseudonyms: dict[str, str]) -> int:
        if not pseudonyms:
            return 0
        result = await self.session.exec(
            delete(LegalHold).where(
                or_(
                    *(
                        (col(LegalHold.key_epoch) == e) & (col(LegalHold.account_pseudonym) == p)
                        for e, p in pseudonyms.items()
                    )
                )
            )
        )
        await self.session.commit()
        return int(result.rowcount or 0)

    # --- retention ----------------------------------------------------------------------------

    async def purge(
        self, *, floor_cut: int, ceiling_cut: int, held: Collection[Subject]
    ) -> dict[str, Any]:
        """Delete what retention allows, never a held row.

        PostgreSQL: every monthly partition that ends at or before ``floor_cut`` is dropped,
        unless it holds rows under legal hold: then only its unheld rows are deleted and the
        partition stays until the hold is lifted. Rows older than ``ceiling_cut`` in partitions
        that straddle the floor are deleted row by row. SQLite: rows older than ``floor_cut``
        are deleted.
        """
        held_clause = self._held(held)
        not_held = true() if held_clause is None else not_(held_clause)
        report: dict[str, Any] = {"dropped_partitions": [], "kept_partitions": [], "deleted": 0}
        if not self.partitioned:
            result = await self.session.exec(
                delete(SearchEvent).where(col(SearchEvent.at) < floor_cut, not_held)
            )
            report["deleted"] = int(result.rowcount or 0)
            await self.session.commit()
            return report
        await self._execute(text(f"SELECT pg_advisory_xact_lock({ADVISORY_LOCK})"))
        for name, start in sorted((await self.partitions()).items(), key=lambda kv: kv[1]):
            end = next_month(start)
            if end > floor_cut:
                continue
            in_range = and_(col(SearchEvent.at) >= start, col(SearchEvent.at) < end)
            n_held = 0
            if held_clause is not None:
                n_held = int(
                    (
                        await self.session.exec(
                            select(func.count())
                            .select_from(SearchEvent)
                            .where(in_range, held_clause)
                        )
                    ).one()
                )
            if n_held == 0:
                count = await self.session.exec(
                    select(func.count()).select_from(SearchEvent).where(in_range)
                )
                report["deleted"] += int(count.one())
                await self._execute(text(f"DROP TABLE {name}"))
                report["dropped_partitions"].append(name)
            else:
                result = await self.session.exec(delete(SearchEvent).where(in_range, not_held))
                report["deleted"] += int(result.rowcount or 0)
                report["kept_partitions"].append(name)
        result = await self.session.exec(
            delete(SearchEvent).where(col(SearchEvent.at) < ceiling_cut, not_held)
        )
        report["deleted"] += int(result.rowcount or 0)
        await self.session.commit()
        return report

    # --- statistics ---------------------------------------------------------------------------

    async def daily_counts(self, since: int, fields: Iterable[str]) -> list[dict[str, Any]]:
        # floor division: an event belongs to the UTC day it happened in (a true division cast
        # to an integer rounds on PostgreSQL, which moved afternoon events to the next day)
        day = col(SearchEvent.at) // 86400
        out: list[dict[str, Any]] = []
        for field in fields:
            column = getattr(SearchEvent, field)
            result = await self._execute(
                select(day.label("day"), column, func.count())
                .where(col(SearchEvent.at) >= since)
                .group_by("day", column)
                .order_by("day", column)
            )
            out.extend(
                {"day": int(d) * 86400, "dimension": field, "value": v, "count": int(n)}
                for d, v, n in result.all()
            )
        return out
