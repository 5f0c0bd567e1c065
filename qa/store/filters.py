"""Metadata filters (article, source, date range), as Chroma, the lexical index and Python callers
apply them; dates as sortable integers."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from qa.errors import InputError


@dataclass
class Filters:
    """Metadata filters: any of article_id, source, date_from/date_to (YYYY-MM-DD, inclusive)."""

    article_id: str | None = None
    source: str | None = None
    date_from: str | None = None
    date_to: str | None = None

    @classmethod
    def parse(cls, value: "Filters | dict | None") -> "Filters":
        """Filters from a dict (API, CLI, Python callers): known fields only, strings, real
        calendar dates, date_from not after date_to; else a FilterError naming the field."""
        if value is None or isinstance(value, Filters):
            return value or cls()
        if not isinstance(value, dict):
            raise FilterError("filters", "must be an object with article_id, source, date_from or date_to")
        known = list(cls.__dataclass_fields__)
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise FilterError("filters", f"unknown field '{unknown[0]}' (known: {', '.join(known)})")
        for key, given in value.items():
            if given is not None and not isinstance(given, str):
                raise FilterError(f"filters.{key}", "must be a string")
        for key in ("date_from", "date_to"):
            if value.get(key) and not is_calendar_date(value[key]):
                raise FilterError(f"filters.{key}", f"not a calendar date YYYY-MM-DD: {value[key]!r}")
        if value.get("date_from") and value.get("date_to") and value["date_from"] > value["date_to"]:
            raise FilterError("filters", f"date_from {value['date_from']} is after date_to {value['date_to']}")
        return cls(**{k: v or None for k, v in value.items()})

    def chroma_where(self) -> dict | None:
        clauses = []
        if self.article_id:
            clauses.append({"article_id": self.article_id})
        if self.source:
            clauses.append({"source": self.source})
        if self.date_from:
            clauses.append({"published_ord": {"$gte": date_ord(self.date_from)}})
        if self.date_to:
            clauses.append({"published_ord": {"$lte": date_ord(self.date_to)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def matches(self, meta: dict) -> bool:
        if self.article_id and meta.get("article_id") != self.article_id:
            return False
        if self.source and meta.get("source") != self.source:
            return False
        ordinal = meta.get("published_ord")
        if self.date_from and (ordinal is None or ordinal < date_ord(self.date_from)):
            return False
        if self.date_to and (ordinal is None or ordinal > date_ord(self.date_to)):
            return False
        return True


class FilterError(InputError, ValueError):
    """Filters that cannot be applied (a ValueError too, for callers that catch those)."""


def is_calendar_date(text: str) -> bool:
    """YYYY-MM-DD naming a day that exists (2019-02-30 does not)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def date_ord(iso_date: str) -> int:
    """2019-11-12 -> 20191112: sortable, and a number so Chroma can range-filter it."""
    return int(iso_date.replace("-", ""))
