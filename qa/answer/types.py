"""The answer and its citations, as every route returns them, and what a route reads evidence from."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Protocol

from qa.retrieve.hybrid import Sentence


NOT_FOUND = "The articles don't say."


KINDS = ("span", "quote", "fact", "summary", "timeline", "not_found")


class EvidenceSource(Protocol):
    """What the engine needs from a library: ranked sentences for a question, the article
    records (for questions about an article itself, and dates), and one article's sentences with
    their vectors (for summaries)."""

    def sentences(self, question: str, filters=None, pool: int | None = None) -> list[Sentence]: ...

    def articles(self) -> list: ...

    def article_sentences(self, article_id: str) -> tuple: ...

    # Optional: `finish_answer(answer)` adds what the store knows to a finished answer (citations'
    # URLs, the story's other publishers, the index's state); the engine calls it when present.


@dataclass
class Citation:
    n: int
    title: str
    article_id: str
    quote: str
    start: int
    end: int
    published: str | None = None
    field: str | None = None  # for a fact answer: the article record field it comes from
    url: str | None = None  # the article's URL, where it has one
    # Wire copies of the cited story by other outlets: [{"outlet", "url", "published", "title"}]
    also: list = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, n: int, sentence: Sentence) -> "Citation":
        return cls(n, sentence.hit.title, sentence.hit.article_id, sentence.text, sentence.start, sentence.end, sentence.hit.published)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("field", "url") or v is not None}


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    grounded: float  # share of the answer's content words found in the cited sentences
    timings: dict = field(default_factory=dict)  # seconds: condense, retrieve, first_token, generate, total
    question: str = ""  # the standalone question actually answered
    kind: str = "span"  # span | quote | fact | summary | timeline | not_found
    # Signals the answer/refuse decision looked at (coverage, scores, agreement, the model's span).
    signals: dict = field(default_factory=dict)
    tokens: int = 0  # tokens generated, all attempts included
    closest: list[Citation] = field(default_factory=list)  # not_found: the nearest passages, not citations
    dates: str = ""  # the publication dates the question named, in words ("articles from 2019-11-01 to …")

    @property
    def refused(self) -> bool:
        return self.kind == "not_found"

    def cited_text(self) -> str:
        """The text with its citation marks: "Motegi [1]" (a chat model's text, a summary and a
        timeline have their own)."""
        if self.refused or not self.citations:
            return self.text
        marks = " ".join(f"[{c.n}]" for c in self.citations)
        return self.text if re.search(r"\[\d+\]", self.text) else f"{self.text} {marks}"

    def to_dict(self) -> dict:
        return {
            "answer": self.text,
            "kind": self.kind,
            "citations": [c.to_dict() for c in self.citations],
            "closest": [c.to_dict() for c in self.closest],
            "grounded": round(self.grounded, 3),
            "refused": self.refused,
            "question": self.question,
            "signals": {k: round(v, 4) if isinstance(v, float) else v for k, v in self.signals.items()},
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "tokens": self.tokens,
            "dates": self.dates,
        }
