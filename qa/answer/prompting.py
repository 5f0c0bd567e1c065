"""Prompts: the templates (package data), the few-shot prefix, and evidence packed and numbered for
a chat model."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the few-shot prefix is read before the model loads, ahead of retrieval's imports
    from qa.retrieve.hybrid import Sentence


@lru_cache(maxsize=None)
def prompt_template(name: str) -> str:
    from importlib.resources import files

    return (files("qa") / "prompts" / name).read_text(encoding="utf-8")


def few_shot_prefix() -> str:
    """The few-shot examples every local (base model) prompt starts with: kept primed in the model."""
    return prompt_template("local_answer.txt").split("Evidence: {evidence}")[0]


def pick_evidence(ranked: list[Sentence], chars: int) -> list[list[Sentence]]:
    """What a chat model reads: the best sentences that fit in `chars` characters (packed as
    Library.passages packs them), grouped by article — articles in the order of their best
    sentence, sentences in reading order — so that neighbours read as passages. Each sentence
    keeps its article offsets: the model cites them by number."""
    from qa.retrieve.hybrid import sentences_within

    by_article: dict[str, list[Sentence]] = {}
    for sentence in sentences_within(ranked, chars):
        by_article.setdefault(sentence.hit.article_id, []).append(sentence)
    return [sorted(group, key=lambda s: s.start) for group in by_article.values()]


def numbered_sources(articles: list[list[Sentence]]) -> str:
    """Each article's sentences numbered [1], [2], … inside one <<< >>> quote per article, with
    "…" where the article skips text; the title and date above it."""
    blocks, n = [], 0
    for group in articles:
        parts = []
        for i, sentence in enumerate(group):
            n += 1
            if i and sentence.start - group[i - 1].end > 2:
                parts.append("…")
            parts.append(f"[{n}] {quoted(sentence.text)}")
        hit = group[0].hit
        blocks.append(f"Article: {quoted(hit.title)} ({hit.published or 'undated'})\n<<<{' '.join(parts)}>>>")
    return "\n\n".join(blocks)


def quoted(text: str) -> str:
    """Article text inside <<< >>> quotes, on one line: it can neither close the quote nor start
    a line that reads like part of the prompt."""
    return " ".join(text.split()).replace("<<<", "‹‹‹").replace(">>>", "›››")
