"""All queries on the search-log database."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway.searchlog.models import SearchEvent


class SearchLogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            connection = await self.session.connection()
            await connection.execute(insert(SearchEvent), list(rows))
            await self.session.commit()

    @staticmethod
    def _subject(pseudonyms: dict[str, str]) -> Any:
        return or_(
            *(
                (col(SearchEvent.key_epoch) == epoch)
                & (col(SearchEvent.account_pseudonym) == pseudonym)
                for epoch, pseudonym in pseudonyms.items()
            )
        )

    async def rows_for(self, pseudonyms: dict[str, str]) -> Sequence[SearchEvent]:
        if not pseudonyms:
            return []
        result = await self.session.exec(
            select(SearchEvent).where(self._subject(pseudonyms)).order_by(col(SearchEvent.id))
        )
        return list(result.all())

    async def delete_for(self, pseudonyms: dict[str, str]) -> int:
        if not pseudonyms:
            return 0
        result = await self.session.exec(delete(SearchEvent).where(self._subject(pseudonyms)))
        await self.session.commit()
        return int(result.rowcount or 0)

    async def count(self) -> int:
        result = await self.session.exec(select(func.count()).select_from(SearchEvent))
        return int(result.one())

    async def daily_counts(self, since: int, fields: Iterable[str]) -> list[dict[str, Any]]:
        day = (col(SearchEvent.at) / 86400).cast(type_=SearchEvent.__table__.c.at.type)  # type: ignore[attr-defined]
        out: list[dict[str, Any]] = []
        for field in fields:
            column = getattr(SearchEvent, field)
            result = await self.session.execute(
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
