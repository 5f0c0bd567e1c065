"""Which retrieved sentence answers the question: the evidence ranking of the answer chain.

Every retrieved sentence gets a row of features (what the retriever thought, how close it is to
the question, where it stands in its story, what its neighbours and its story say) and the rows
are ordered by a linear score whose weights `python -m evals.rank_fit` fits on natural news
questions (a listwise softmax over each question's sentences, NewsQA stories the benchmark does
not sample) and writes to qa/retrieve/ranking.json."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa.text.words import asked_lemmas, content_lemmas, name_in, question_names
from qa.retrieve.hybrid import Sentence

RANK_FILE = Path(__file__).resolve().parent / "ranking.json"
LEDE_CHARS = 500  # the lede prior is half its weight 500 characters into the article
NEWS_CHARS = 6000  # the news-lede prior fades for longer documents (reference pages, reports)
LEDE_SIMILARITY_CHARS = 600  # a story's opening, whose closeness to the question says it is the story asked about

FEATURES = [
    "retriever", "similarity", "idf_coverage", "coverage", "lede", "news_lede", "first_article", "second_article",
    "speaker", "names_missing", "neighbour_similarity", "article_similarity", "article_coverage",
    "article_lede_similarity", "article_score", "type_cue", "length",
]

_SPEAKING = r"(?:said|says|say|told|tells|added|adds|stated|noted|warned|argued|explained|insisted|declared|announced)"
_SPEAKER_QUESTION_RE = re.compile(
    r"\b[Ww]hat (?:did|does|has|had|have) ((?:[A-Z][\w.'’-]*\s+)*[A-Z][\w'’-]*) (?:say|said|tell|told|add|state|note|warn|argue|explain|insist|declare|announce)\b")
_MONTHS = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
_TIME_RE = re.compile(rf"\b(?:{_MONTHS}|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|(?:1[89]|20)\d\d|"
                      r"yesterday|today|tomorrow|tonight|ago|(?:last|this|next) (?:week|weekend|month|year)|\d{1,2}(?::\d\d)? ?[ap]\.?m\.?)\b", re.I)
_NUMBER_RE = re.compile(r"\b\d[\d,.]*\b|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                        r"forty|fifty|hundred|thousand|million|billion|dozens?|half)\b", re.I)
_NAME_RE = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*")
_PLACE_RE = re.compile(r"\b(?:in|at|from|to|near|outside)\s+(?:the\s+)?[A-Z][a-z]+")


def speaker_of(question: str) -> str | None:
    """The name of whoever a "What did X say?" question is about (its last word: Motegi for
    Toshimitsu Motegi), or None."""
    match = _SPEAKER_QUESTION_RE.search(question)
    return match.group(1).split()[-1] if match else None


def spoken_by(name: str, text: str) -> bool:
    """Is the sentence something `name` said ("…," Motegi said / Motegi told reporters that …)?"""
    name = re.escape(name)
    return bool(re.search(rf"\b{name}\b(?:\s+[\w'’,-]+){{0,3}}\s+{_SPEAKING}\b|\b{_SPEAKING}\s+(?:[A-Z][\w'’.-]*\s+){{0,3}}{name}\b", text))


def type_cue(question: str, text: str) -> float:
    """Whether the sentence holds something of the kind the question asks for (a name for who, a
    date or time for when, a number for how many, a place for where) that the question does not
    already say; a cheap stand-in for the reader's typed entities, for every retrieved sentence."""
    q = question.lower()
    asked = {w.lower() for name in question_names(question) for w in name.split()}
    if re.search(r"\bhow (?:many|much|long|old|far)\b|\bwhat (?:percentage|number|amount)\b", q):
        found = [m.group(0) for m in _NUMBER_RE.finditer(text)]
    elif re.search(r"\bwhen\b|\bwhat (?:year|day|month|time|date)\b", q):
        found = [m.group(0) for m in _TIME_RE.finditer(text)]
    elif re.search(r"\bwho(?:m|se)?\b", q):
        found = [m.group(0) for m in _NAME_RE.finditer(text)]
    elif re.search(r"\bwhere\b", q):
        found = [m.group(0).split()[-1] for m in _PLACE_RE.finditer(text)]
    else:
        return 0.0
    return float(any(not set(w.lower() for w in f.split()) <= asked for f in found))


@lru_cache(maxsize=1)
def weights() -> np.ndarray:
    fitted = json.loads(RANK_FILE.read_text())["weights"]
    return np.array([fitted.get(f, 0.0) for f in FEATURES])


def _lede(s: Sentence) -> float:
    return 1.0 / (1 + s.start / LEDE_CHARS)


def features(question: str, ranked: list[Sentence]) -> np.ndarray:
    """One row of FEATURES per sentence."""
    speaker = speaker_of(question)
    names = question_names(question)
    asked = asked_lemmas(question)
    wanted = asked_lemmas(question, skip_names=True)
    lemmas = [set(content_lemmas(s.text)) for s in ranked]
    covered = [len(wanted & ls) / len(wanted) if wanted else 0.0 for ls in lemmas]

    # The best two articles by a first pass (a question is about one story).
    first = sorted(range(len(ranked)), key=lambda i: -(ranked[i].score + 2.0 * covered[i] + 2.0 * _lede(ranked[i])))
    articles = list(dict.fromkeys(ranked[i].hit.article_id for i in first))[:2]

    by_article: dict[str, list[int]] = {}
    for i, s in enumerate(ranked):
        by_article.setdefault(s.hit.article_id, []).append(i)
    # What the sentences next to it and the rest of its story say: the answer often sits beside
    # the sentence that matches the question's words, in the story the question is about.
    neighbour_sim = [0.0] * len(ranked)
    article: dict[str, tuple[float, float, float, float]] = {}  # similarity, coverage, lede similarity, score
    for story, members in by_article.items():
        members.sort(key=lambda i: ranked[i].start)
        for a, b in zip(members, members[1:]):
            if ranked[b].start - ranked[a].end <= 3:
                neighbour_sim[a] = max(neighbour_sim[a], ranked[b].similarity)
                neighbour_sim[b] = max(neighbour_sim[b], ranked[a].similarity)
        union = set().union(*(lemmas[i] for i in members))
        article[story] = (max(ranked[i].similarity for i in members),
                          len(asked & union) / len(asked) if asked else 0.0,
                          max((ranked[i].similarity for i in members if ranked[i].start < LEDE_SIMILARITY_CHARS), default=0.0),
                          max(ranked[i].score for i in members))

    rows = []
    for i, s in enumerate(ranked):
        news = min(1.0, NEWS_CHARS / s.hit.article_chars) if s.hit.article_chars else 1.0
        lede = _lede(s)
        story = s.hit.article_id
        rows.append([
            s.score, s.similarity, s.idf_coverage, covered[i], lede, news * lede,
            float(bool(articles) and story == articles[0]), float(len(articles) > 1 and story == articles[1]),
            float(bool(speaker and spoken_by(speaker, s.text))),
            float(sum(not name_in(n, s.text) for n in names)),
            neighbour_sim[i], *article[story], type_cue(question, s.text), math.log(1 + len(s.text)),
        ])
    return np.array(rows, dtype=float).reshape(len(ranked), len(FEATURES))


def rank_evidence(question: str, ranked: list[Sentence]) -> list[Sentence]:
    """The retrieved sentences re-ordered for answering, best first, each carrying its score
    (see the module's docstring; the fitted figures are in qa/retrieve/ranking.json's note)."""
    if not ranked:
        return []
    scores = features(question, ranked) @ weights()
    return [replace(ranked[i], rank_score=float(scores[i])) for i in np.argsort(-scores, kind="stable")]
