"""Dates in questions: "in November 2019", "on Tuesday", "last week", "since 2018", "yesterday"
become a publication-date range for retrieval, and the phrase leaves the question (a date is not a
word the evidence must hold).

Relative dates are read against a reference the caller gives: weekday names against the article
being discussed (news says "Tuesday" for the Tuesday before its date), "yesterday" / "last week"
against today — or, when the library holds nothing that recent, against its newest article, and
the range says which. The phrases are found with our own patterns (a news question uses few date
forms) and read with the standard library's calendar, which also rejects dates that do not exist.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from qa.errors import InputError

_MONTHS = {name.lower(): n for n, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.lower(): n for n, name in enumerate(calendar.month_abbr) if name}
_MONTHS["sept"] = 9
_WEEKDAYS = {name.lower(): n for n, name in enumerate(calendar.day_name)}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10}

_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|May|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d{2}"
_FULL_MONTH = "|".join(calendar.month_name[1:])
_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
# One point or period in time, most specific forms first.
_WHEN = (
    rf"(?P<iso>\d{{4}}-\d{{1,2}}-\d{{1,2}})"
    rf"|(?P<md>{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?)"
    rf"|(?P<dm>{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?)"
    rf"|(?P<my>{_MONTH},?\s+{_YEAR})"
    rf"|(?P<relative>yesterday|today|tonight|this\s+(?:morning|week|month|year)|(?:last|past|previous)\s+(?:week|month|year)"
    rf"|(?:\d+|a|an|one|two|three|four|five|six|seven|ten)\s+(?:day|week|month|year)s?\s+ago)"
    rf"|(?P<weekday>(?:last\s+|this\s+|past\s+)?{_WEEKDAY})"
    # A bare month or year only after a preposition ("in May", "since 2018"): "May" alone is a verb,
    # "2018" alone a number.
    rf"|(?P<month>(?-i:{_FULL_MONTH}))|(?P<year>{_YEAR})"
)
_PREPOSITION = r"(?:(?P<prep>in|on|during|since|after|before|until|till|from|as\s+of|of)\s+)?(?:the\s+)?"
_PHRASE_RE = re.compile(rf"\b{_PREPOSITION}(?:{_WHEN})\b", re.I)
_RANGE_RE = re.compile(r"\b(?:between|from)\s+(?P<a>.+?)\s+(?:and|to|until|through)\s+(?P<b>.+?)\s*(?=[?!]|\.?$)", re.I)


@dataclass
class DateRange:
    """What a question's date phrase means: an inclusive range of publication dates (either end
    open), the phrase as written, and what a relative date was read against."""

    phrase: str
    date_from: str | None
    date_to: str | None
    basis: str = ""  # e.g. "counted from the newest article (2019-11-12)"
    counted_from: str = ""  # "" (an absolute date), "article" (weekday, day without a year) or "today"

    def describe(self) -> str:
        if self.date_from and self.date_to:
            span = self.date_from if self.date_from == self.date_to else f"{self.date_from} to {self.date_to}"
            words = f"articles from {span}"
        elif self.date_from:
            words = f"articles from {self.date_from} on"
        else:
            words = f"articles up to {self.date_to}"
        return f"{words} (\"{self.phrase}\"{', ' + self.basis if self.basis else ''})"

    def filters(self) -> dict:
        return {k: v for k, v in (("date_from", self.date_from), ("date_to", self.date_to)) if v}

    def signals(self) -> dict:
        return {"date_phrase": self.phrase, "date_from": self.date_from or "", "date_to": self.date_to or "",
                "date_basis": self.basis}


def _phrases(text: str):
    """The date phrases of a text; a bare month or year counts only after a preposition."""
    for match in _PHRASE_RE.finditer(text):
        if (match.group("month") or match.group("year")) and not match.group("prep"):
            continue
        yield match


def has_date(question: str) -> bool:
    """Cheap check before any library lookup: does the question hold a date phrase?"""
    return next(_phrases(question), None) is not None


def _day(year: int, month: int, day: int, phrase: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise InputError("question", f"names a date that does not exist: {phrase}") from None


def _month_range(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def _month_number(word: str) -> int | None:
    return _MONTHS.get(word.lower().rstrip("."))


def _period(match: re.Match, today: date, article_day: date) -> tuple[date, date, str]:
    """(first day, last day, what it counts from: "", "article" or "today") of one matched point
    or period."""
    if match.group("iso"):
        y, m, d = (int(x) for x in match.group("iso").split("-"))
        day = _day(y, m, d, match.group("iso"))
        return day, day, ""
    for name in ("md", "dm"):
        part = match.group(name)
        if part:
            words = re.findall(r"[A-Za-z]+|\d+", part)
            month = next(_month_number(w) for w in words if w.isalpha() and _month_number(w))
            numbers = [int(w) for w in words if w.isdigit()]
            day_number, year = numbers[0], numbers[1] if len(numbers) > 1 else None
            if year is None:  # "on November 12": the latest such day not after the reference
                year = article_day.year if (month, day_number) <= (article_day.month, article_day.day) else article_day.year - 1
                day = _day(year, month, day_number, part)
                return day, day, "article"
            day = _day(year, month, day_number, part)
            return day, day, ""
    if match.group("my"):
        words = re.findall(r"[A-Za-z]+|\d+", match.group("my"))
        return (*_month_range(int(words[-1]), _month_number(words[0])), "")
    if match.group("month"):
        month = _month_number(match.group("month"))
        year = article_day.year if month <= article_day.month else article_day.year - 1
        return (*_month_range(year, month), "article")
    if match.group("year"):
        year = int(match.group("year"))
        return date(year, 1, 1), date(year, 12, 31), ""
    if match.group("weekday"):
        wanted = _WEEKDAYS[match.group("weekday").split()[-1].lower()]
        back = (article_day.weekday() - wanted) % 7
        if match.group("weekday").lower().startswith("last") and back == 0:
            back = 7
        day = article_day - timedelta(days=back)
        return day, day, "article"
    words = match.group("relative").lower().split()
    if words[0] in ("yesterday",):
        return today - timedelta(days=1), today - timedelta(days=1), "today"
    if words[0] in ("today", "tonight") or words[-1] == "morning":
        return today, today, "today"
    unit = words[-1].rstrip("s") if words[-1] != "ago" else words[-2].rstrip("s")
    if words[-1] == "ago":
        count = int(words[0]) if words[0].isdigit() else _NUMBERS[words[0]]
        back = {"day": 1, "week": 7, "month": 30, "year": 365}[unit] * count
        day = today - timedelta(days=back)
        return (day, day, "today") if unit == "day" else (day - timedelta(days=3), day + timedelta(days=3), "today")
    if words[0] == "this":
        if unit == "week":
            return today - timedelta(days=today.weekday()), today, "today"
        if unit == "month":
            return today.replace(day=1), today, "today"
        return today.replace(month=1, day=1), today, "today"
    # last / past / previous week, month, year: the span that ends at the reference day
    span = {"week": 7, "month": 30, "year": 365}[unit]
    return today - timedelta(days=span), today, "today"


def read_dates(question: str, *, today: date, article_day: date | None = None) -> tuple[DateRange | None, str]:
    """(the date range a question names, the question without the phrase). `today`: what
    "yesterday" and "last week" count from; `article_day`: what weekday names and day-month
    dates without a year count from (default: today). (None, question) when it names no date;
    an InputError when it names one that does not exist."""
    article_day = article_day or today
    between = _RANGE_RE.search(question)
    if between:
        a, b = (_PHRASE_RE.fullmatch(between.group(g).strip()) for g in "ab")
        if a and b:
            first, _, from_a = _period(a, today, article_day)
            _, last, from_b = _period(b, today, article_day)
            if first > last:
                raise InputError("question", f"names a date range that ends before it starts: {between.group(0).strip()}")
            return (DateRange(between.group(0).strip(), first.isoformat(), last.isoformat(), counted_from=from_a or from_b),
                    _without(question, between.start(), between.end()))
    match = next(_phrases(question), None)
    if not match:
        return None, question
    first, last, counted_from = _period(match, today, article_day)
    prep = (match.group("prep") or "").lower()
    date_from, date_to = first.isoformat(), last.isoformat()
    if prep in ("since", "from", "as of"):
        date_to = None
    elif prep == "after":
        date_from, date_to = (last + timedelta(days=1)).isoformat(), None
    elif prep in ("before",):
        date_from, date_to = None, (first - timedelta(days=1)).isoformat()
    elif prep in ("until", "till"):
        date_from = None
    return (DateRange(match.group(0).strip(), date_from, date_to, counted_from=counted_from),
            _without(question, match.start(), match.end()))


def _without(question: str, start: int, end: int) -> str:
    """The question with the phrase cut out and the spacing mended ("What did Motegi say?")."""
    text = (question[:start] + question[end:]).strip()
    text = re.sub(r"\s+([?.!,])", r"\1", re.sub(r"\s{2,}", " ", text))
    return text
