"""Hybrid retrieval: Chroma vector search and BM25 (bm25s), fused by reciprocal rank.

Chroma is the single source of truth. The BM25 index is a per-process cache built from the chunk
collection and keyed by the collection's write stamp, so it is rebuilt after any
ingest or delete, by this process or another one sharing a Chroma server.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .store import Store

# Reciprocal-rank-fusion constant. The usual 60 flattens the top ranks; 10 lets a first place
# in either list count more, and measured better on SQuAD (benchmarks/retrieval.py): recall@10
# 0.958 vs 0.956 at 50 candidates, 0.960 vs 0.953 at 100.
RRF_K = 10


@dataclass
class Hit:
    text: str
    score: float
    title: str
    article_id: str
    start: int
    end: int
    source: str = ""
    published: str | None = None
    chunk_id: str = ""
    ranks: dict = field(default_factory=dict)  # rank in each retriever, for debugging and evals


@dataclass
class Filters:
    """Metadata filters: any of article_id, source, date_from/date_to (YYYY-MM-DD, inclusive)."""

    article_id: str | None = None
    source: str | None = None
    date_from: str | None = None
    date_to: str | None = None

    @classmethod
    def parse(cls, value: "Filters | dict | None") -> "Filters":
        if value is None or isinstance(value, Filters):
            return value or cls()
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown filter field(s): {', '.join(sorted(unknown))}")
        for key in ("date_from", "date_to"):
            if value.get(key) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value[key])):
                raise ValueError(f"filter '{key}' must be a date YYYY-MM-DD, got {value[key]!r}")
        return cls(**value)

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


def date_ord(iso_date: str) -> int:
    """2019-11-12 -> 20191112: sortable, and a number so Chroma can range-filter it."""
    return int(iso_date.replace("-", ""))


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


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed words without English stop words: BM25 query terms, and the words the
    answer chain measures overlap and support on."""
    return bm25s_tokenize([text])[0]


def bm25s_tokenize(texts: list[str]) -> list[list[str]]:
    bm25s, stemmer = _tokenizer()
    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)


def is_current(meta: dict, current: dict[str, str]) -> bool:
    """A chunk belongs to the version of its article that the registry points at."""
    return current.get(meta.get("article_id")) == meta.get("content_hash")


class BM25Cache:
    """bm25s index over the current chunks of one collection.

    Rebuilt when the collection's stamp changes; the rebuild is incremental where it
    costs most: only chunks it has not seen are fetched and tokenized (their tokens are kept per
    chunk id), then the index is re-made from the kept tokens."""

    def __init__(self, store: Store):
        self.store = store
        self.key: str | None = None
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.metas: list[dict] = []
        self.current: dict[str, str] = {}
        self.index = None
        self._tokens: dict[str, list[str]] = {}
        self._texts: dict[str, str] = {}
        self._positions: dict[str, int] = {}

    def refresh(self) -> None:
        """Rebuild when the collection changed. The stamp is read before the data, so a write
        racing with the rebuild leaves a newer stamp behind and triggers another rebuild."""
        key = self.store.stamp()
        if key == self.key:
            return
        with self.lock:
            if key == self.key:
                return
            current = self.store.current_hashes()
            ids, metas = self.store.all_chunk_metadata()
            keep = [i for i, m in enumerate(metas) if is_current(m, current)]
            ids = [ids[i] for i in keep]
            metas = [metas[i] for i in keep]
            new = [(i, m) for i, m in zip(ids, metas) if i not in self._tokens]
            if new:
                texts = self.store.documents([i for i, _ in new])
                # The title travels with each chunk: questions often name the article's subject only.
                tokenized = bm25s_tokenize([f"{m.get('title', '')}\n{t}" for (_, m), t in zip(new, texts)])
                for (chunk_id, _), text, tokens in zip(new, texts, tokenized):
                    self._texts[chunk_id] = text
                    self._tokens[chunk_id] = tokens
            live = set(ids)
            for gone in [i for i in self._tokens if i not in live]:
                del self._tokens[gone], self._texts[gone]
            self.ids, self.metas, self.current = ids, metas, current
            self.texts = [self._texts[i] for i in ids]
            self._positions = {chunk_id: n for n, chunk_id in enumerate(ids)}
            self.index = None
            corpus = [self._tokens[i] or [""] for i in ids]  # bm25s needs a token per document
            if corpus:
                bm25s, _ = _tokenizer()
                index = bm25s.BM25()
                index.index(corpus, show_progress=False)
                self.index = index
            self.key = key

    def record(self, chunk_id: str) -> tuple[str, dict] | None:
        """(text, metadata) of a current chunk, None for any other id."""
        position = self._positions.get(chunk_id)
        return None if position is None else (self.texts[position], self.metas[position])

    def search(self, query: str, n: int, filters: "Filters") -> list[int]:
        """Indices (into self.ids) of the n best BM25 matches with a positive score."""
        if self.index is None:
            return []
        tokens = [t for t in tokenize(query) if t in self.index.vocab_dict]
        if not tokens:
            return []
        scores = self.index.get_scores(tokens)
        if filters.chroma_where() is not None:
            mask = np.fromiter((filters.matches(m) for m in self.metas), dtype=bool, count=len(self.metas))
            scores = np.where(mask, scores, 0.0)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [int(i) for i in top if scores[i] > 0]


class HybridRetriever:
    """Vector + BM25 candidates, fused by reciprocal rank; stale chunks (of a replaced article
    whose registry record moved on) are never returned."""

    def __init__(self, store: Store, embedder, candidates: int = 50):
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.bm25 = BM25Cache(store)

    MODES = ("hybrid", "vector", "keyword")

    def search(self, question: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Hit]:
        """`mode`: hybrid (default), vector (embeddings only) or keyword (BM25 only)."""
        if mode not in self.MODES:
            raise ValueError(f"unknown search mode '{mode}' (choose {', '.join(self.MODES)})")
        filters = Filters.parse(filters)
        self.bm25.refresh()
        n = max(self.candidates, 2 * k)
        fused: dict[str, float] = {}
        records: dict[str, tuple[str, dict]] = {}
        ranks: dict[str, dict] = {}

        vector = []
        if mode != "keyword":
            vector = self.store.nearest_ids(self.embedder.embed_query(question), n, filters.chroma_where())
        rank = 0
        for chunk_id in vector:
            # Text and metadata come from the cache of current chunks (no second fetch); an id it
            # lacks is an orphan of an interrupted or in-flight replacement.
            record = self.bm25.record(chunk_id)
            if record is None:
                continue
            rank += 1
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            records[chunk_id] = record
            ranks.setdefault(chunk_id, {})["vector"] = rank

        keyword = self.bm25.search(question, n, filters) if mode != "vector" else []
        for rank, index in enumerate(keyword, start=1):
            chunk_id = self.bm25.ids[index]
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            records.setdefault(chunk_id, (self.bm25.texts[index], self.bm25.metas[index]))
            ranks.setdefault(chunk_id, {})["bm25"] = rank

        best = sorted(fused, key=fused.get, reverse=True)[:k]
        return [self._hit(chunk_id, *records[chunk_id], fused[chunk_id], ranks[chunk_id]) for chunk_id in best]

    @staticmethod
    def _hit(chunk_id: str, text: str, meta: dict, score: float, ranks: dict) -> Hit:
        return Hit(
            text=text,
            score=score,
            title=meta.get("title", ""),
            article_id=meta["article_id"],
            start=int(meta["start"]),
            end=int(meta["end"]),
            source=meta.get("source", ""),
            published=meta.get("published") or None,
            chunk_id=chunk_id,
            ranks=ranks,
        )

    def as_llamaindex(self, k: int = 5):
        """The same retriever as a LlamaIndex BaseRetriever (for query engines and evals)."""
        from llama_index.core.retrievers import BaseRetriever
        from llama_index.core.schema import NodeWithScore, TextNode

        outer = self

        class _Retriever(BaseRetriever):
            def _retrieve(self, query_bundle):
                return [
                    NodeWithScore(
                        node=TextNode(
                            id_=h.chunk_id,
                            text=h.text,
                            start_char_idx=h.start,
                            end_char_idx=h.end,
                            metadata={"title": h.title, "article_id": h.article_id, "published": h.published},
                        ),
                        score=h.score,
                    )
                    for h in outer.search(query_bundle.query_str, k=k)
                ]

        return _Retriever()
