"""BM25 tokens: lower-cased, stemmed words without English stop words, for the lexical index
(bm25s_tokenize) and for queries and overlap measures (tokenize)."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1)
def _tokenizer():
    """bm25s and its Snowball stemmer, made once per process (queries and answers reuse them)."""
    import bm25s

    try:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    except ImportError:  # stemming helps a little; BM25 works without it
        stemmer = None
    return bm25s, stemmer


_WORD_RE = re.compile(r"(?u)\b\w\w+\b")  # bm25s's token pattern
_stems: dict[str, str] = {}


@lru_cache(maxsize=1)
def _stop_words() -> frozenset:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed words without English stop words: BM25 query terms, and the words the
    answer chain measures overlap and support on. The same tokens as bm25s.tokenize() (the index
    side), without its per-call set-up, which costs more than the work for one short text."""
    _, stemmer = _tokenizer()
    stop = _stop_words()
    words = [w for w in _WORD_RE.findall(text.lower()) if w not in stop]
    if stemmer is None:
        return words
    new = [w for w in set(words) if w not in _stems]
    if new:
        if len(_stems) > 500_000:
            _stems.clear()
        _stems.update(zip(new, stemmer.stemWords(new)))
    return [_stems[w] for w in words]


def bm25s_tokenize(texts: list[str]) -> list[list[str]]:
    bm25s, stemmer = _tokenizer()
    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
