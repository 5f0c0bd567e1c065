"""Whole-article and over-time answers, chosen without a model: which sentences summarise an
article, and which articles a topic's timeline lists.

A news story's lede carries its summary, so a summary starts there; the rest are the article's
most central sentences (cosine of each stored sentence vector to the article's mean vector),
skipping near-repeats, in article order. Timelines list the articles whose best passage speaks
of the topic, newest first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qa.text.words import LEADING_PRONOUN_RE, content_lemmas, lemma_coverage

# Sentences per answer: tl;dr one or two, a summary three, key points five.
SIZES = {"tldr": 2, "summary": 3, "key_points": 5}
LONG_LEDE_WORDS = 25  # a lede this long is a tl;dr by itself
REPEAT_COSINE = 0.85  # a sentence this close to one already chosen says it again
MIN_WORDS = 6  # shorter "sentences" are captions, credits or headings, not statements
TIMELINE_ARTICLES = 5
# An article belongs on a topic's timeline when its best passage holds this share of the topic's
# words, or its best sentence is this close to the topic by vector.
TOPIC_COVERAGE, TOPIC_SIMILARITY = 0.5, 0.55


@dataclass
class ArticleSentence:
    text: str
    start: int
    end: int


def _usable(sentences: list[ArticleSentence]) -> list[int]:
    return [i for i, s in enumerate(sentences) if len(s.text.split()) >= MIN_WORDS] or list(range(len(sentences)))


def lede_index(sentences: list[ArticleSentence]) -> int | None:
    """The article's first statement (its lede), skipping captions and credits."""
    usable = _usable(sentences)
    return usable[0] if usable else None


def summary_picks(sentences: list[ArticleSentence], vectors: np.ndarray, length: str) -> list[int]:
    """Indices (article order) of the sentences that summarise an article at this length."""
    usable = _usable(sentences)
    if not usable:
        return []
    size = SIZES[length]
    lede = usable[0]
    if length == "tldr" and len(sentences[lede].text.split()) >= LONG_LEDE_WORDS:
        return [lede]
    vectors = np.asarray(vectors, dtype=np.float32)
    centre = vectors[usable].mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    centrality = vectors @ centre
    chosen = [lede]
    for i in sorted(usable, key=lambda i: -centrality[i]):
        if len(chosen) >= size:
            break
        if i in chosen or max(float(vectors[i] @ vectors[j]) for j in chosen) >= REPEAT_COSINE:
            continue
        if LEADING_PRONOUN_RE.match(sentences[i].text) and i - 1 not in chosen:
            continue  # "He and Milley also agreed …" means little without the sentence before it
        chosen.append(i)
    return sorted(chosen)


def on_topic(topic: str, best_sentence_text: str, passage: str, similarity: float) -> bool:
    """Does an article's best passage speak of the topic? A topic with no content words (only
    stop words) lets every article through."""
    if not content_lemmas(topic):
        return True
    return (lemma_coverage(topic, passage) >= TOPIC_COVERAGE or lemma_coverage(topic, best_sentence_text) >= TOPIC_COVERAGE
            or similarity >= TOPIC_SIMILARITY)


def newest_first(items: list, published) -> list:
    """Items sorted by their article's date, newest first, undated last (stable otherwise)."""
    dated = sorted((x for x in items if published(x)), key=published, reverse=True)
    return dated + [x for x in items if not published(x)]
