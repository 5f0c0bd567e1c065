"""BM25 tokens: lower-cased, stemmed words without English stop words, for the lexical index
(bm25s_tokenize) and for queries and overlap measures (tokenize)."""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _stemmer():
    """bm25s's Snowball stemmer, made once per process (queries and answers reuse it)."""
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # stemming helps a little; BM25 works without it
        return None


_WORD_RE = re.compile(r"(?u)\b\w\w+\b")  # bm25s's token pattern
_stems: dict[str, str] = {}


@lru_cache(maxsize=1)
def _stop_words() -> frozenset:
    """bm25s's English stop words, read from its stopwords module alone: importing the bm25s
    package (it imports scipy) costs ~0.3 s a query never needs (a cold `qa ask` paid it)."""
    package = importlib.util.find_spec("bm25s")
    spec = importlib.util.spec_from_file_location(
        "_qa_bm25s_stopwords", Path(next(iter(package.submodule_search_locations))) / "stopwords.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed words without English stop words: BM25 query terms, and the words the
    answer chain measures overlap and support on. The same tokens as bm25s.tokenize() (the index
    side), without its per-call set-up, which costs more than the work for one short text."""
    stemmer = _stemmer()
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
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)
