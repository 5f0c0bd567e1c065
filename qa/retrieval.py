"""Hybrid retrieval: Chroma vector search, BM25 (bm25s) and sentence vectors, fused by reciprocal
rank; then sentence-level ranking for passages that fit a character budget.

Chroma is the single source of truth. The BM25 index is a per-process cache built from the chunk
collection and keyed by the collection's write stamp, so it is rebuilt after any
ingest or delete, by this process or another one sharing a Chroma server.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import threading
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .chunking import sentence_spans
from .store import Store, pack_sentences, rows_to_vectors, sentence_offsets, sentence_rows

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


def is_current(meta: dict, current: dict[str, str]) -> bool:
    """A chunk belongs to the version of its article that the registry points at."""
    return current.get(meta.get("article_id")) == meta.get("content_hash")


class BM25Cache:
    """bm25s index over the current chunks of one collection.

    Rebuilt when the collection's stamp changes, incrementally where it costs most: chunk ids are
    listed (cheap), and only chunks not seen before are fetched and tokenized. A chunk id names
    its article version (content hash) and position, so a chunk's text, metadata and tokens never
    change: they are kept per id, in memory and, for large collections, in a JSON file under the
    data dir that lets a restarted server skip re-reading and re-tokenizing every chunk."""

    FORMAT = "bm25-cache-v4"  # bump when tokenization or the chunk metadata changes
    SAVE_AFTER_NEW = 2000  # chunks fetched in one refresh that make a disk save worth it

    def __init__(self, store: Store, cache_file: Path | None = None):
        self.store = store
        self.cache_file = cache_file
        self.key: str | None = None
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.metas: list[dict] = []
        self.current: dict[str, str] = {}
        self.index = None
        self._seen: dict[str, tuple[str, dict, list[str]]] = {}  # id -> (text, metadata, tokens)
        self._rows: dict[str, np.ndarray] = {}  # id -> its sentence vectors, packed (store.sentence_rows)
        self._positions: dict[str, int] = {}
        self._doc_freq = None  # chunks per BM25 token id
        self._loaded = False

    def refresh(self) -> None:
        """Rebuild when the collection changed. The stamp is read before the data, so a write
        racing with the rebuild leaves a newer stamp behind and triggers another rebuild."""
        key = self.store.stamp()
        if key == self.key:
            return
        with self.lock:
            if key == self.key:
                return
            if not self._loaded:
                self._load()
            current = self.store.current_hashes()
            all_ids = self.store.all_chunk_ids()
            new = [i for i in all_ids if i not in self._seen]
            if new:
                texts, metas = self.store.chunk_records(new)
                # The title travels with each chunk: questions often name the article's subject only.
                tokenized = bm25s_tokenize([f"{m.get('title', '')}\n{t}" for t, m in zip(texts, metas)])
                for chunk_id, text, meta, tokens in zip(new, texts, metas, tokenized):
                    self._seen[chunk_id] = (text, meta, tokens)
                    rows = sentence_rows(meta, remove=True)
                    if rows is not None:
                        self._rows[chunk_id] = rows
            live = set(all_ids)
            for gone in [i for i in self._seen if i not in live]:
                del self._seen[gone]
                self._rows.pop(gone, None)
            ids = [i for i in all_ids if is_current(self._seen[i][1], current)]
            self.ids, self.current = ids, current
            self.texts = [self._seen[i][0] for i in ids]
            self.metas = [self._seen[i][1] for i in ids]
            self._positions = {chunk_id: n for n, chunk_id in enumerate(ids)}
            self.index = self._saved_index(key, ids)
            corpus = [self._seen[i][2] or [""] for i in ids]  # bm25s needs a token per document
            if corpus and self.index is None:
                bm25s, _ = _tokenizer()
                index = bm25s.BM25()
                index.index(corpus, show_progress=False)
                self.index = index
            self._doc_freq = np.diff(self.index.scores["indptr"]) if self.index is not None else None
            self.key = key
            if len(new) >= self.SAVE_AFTER_NEW:
                self._save()

    def _load(self) -> None:
        self._loaded = True
        if not self.cache_file or not self.cache_file.exists():
            return
        try:
            data = json.loads(self.cache_file.read_text())
            if data.get("format") == self.FORMAT:
                self._seen = {i: (t, m, k) for i, t, m, k in zip(data["ids"], data["texts"], data["metas"], data["tokens"])}
                self._rows = {i: np.frombuffer(base64.b64decode(r), dtype=np.int8).reshape(n, -1)
                              for i, (n, r) in data["rows"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            self._seen, self._rows = {}, {}  # a damaged cache is only a slower start

    def _saved_index(self, key: str, ids: list[str]):
        """The index saved with the token cache, when it was built for this very stamp and chunk
        set: a restarted server then skips the build (~5 s at 100k chunks)."""
        folder = self.cache_file.with_suffix(".index") if self.cache_file else None
        try:
            if not folder or json.loads((folder / "built-for.json").read_text()) != {"stamp": key, "chunks": len(ids), "first": ids[:1], "last": ids[-1:]}:
                return None
            bm25s, _ = _tokenizer()
            return bm25s.BM25.load(str(folder), show_progress=False)
        except (OSError, ValueError):
            return None

    def _save(self) -> None:
        if not self.cache_file:
            return
        ids = list(self._seen)
        data = {"format": self.FORMAT, "ids": ids, "texts": [self._seen[i][0] for i in ids],
                "metas": [self._seen[i][1] for i in ids], "tokens": [self._seen[i][2] for i in ids],
                "rows": {i: (len(r), base64.b64encode(r.tobytes()).decode("ascii")) for i, r in self._rows.items()}}
        folder = self.cache_file.with_suffix(".index")
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            partial = self.cache_file.with_suffix(f".{os.getpid()}.tmp")
            with partial.open("w") as out:
                json.dump(data, out)  # streamed: one string of the whole cache would double the peak
            os.replace(partial, self.cache_file)  # readers see the old file or the new one
            (folder / "built-for.json").unlink(missing_ok=True)  # invalid until fully rewritten
            if self.index is not None:
                self.index.save(str(folder), show_progress=False)
                built_for = {"stamp": self.key, "chunks": len(self.ids), "first": self.ids[:1], "last": self.ids[-1:]}
                (folder / "built-for.json").write_text(json.dumps(built_for))
        except OSError:
            pass  # read-only data dir: serve without the cache

    def idf(self, token: str) -> float:
        """log(1 + chunks / chunks with the token): how much sharing this word says."""
        token_id = self.index.vocab_dict.get(token) if self.index is not None else None
        if token_id is None or self._doc_freq is None or token_id >= len(self._doc_freq):
            return 0.0
        return math.log(1 + len(self.ids) / max(int(self._doc_freq[token_id]), 1))

    def sentence_rows(self, chunk_id: str):
        return self._rows.get(chunk_id)

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


@dataclass
class Sentence:
    """One sentence of a retrieved chunk, scored for a question; offsets are article offsets."""

    text: str
    start: int
    end: int
    hit: Hit  # the chunk it belongs to
    score: float
    similarity: float = 0.0  # cosine of its own vector to the question's
    idf_coverage: float = 0.0  # share of the question words' idf mass that it holds (rare words weigh more)
    missing_idf: float = 0.0  # the highest idf among question words its whole chunk lacks


class HybridRetriever:
    """Three ranked lists fused by reciprocal rank: chunk vectors (Chroma), BM25, and the best
    sentence of each candidate chunk by sentence vector. Stale chunks (of a replaced article
    whose registry record moved on) are never returned.

    `sentences()` then scores every sentence of the best chunks (their chunk's fused score, the
    sentence's own similarity and its rare-word overlap with the question), and `passages()` packs
    the best sentences into a character budget: on SQuAD that covers the answer more often than
    whole chunks in the same space (benchmarks/retrieval.py)."""

    MODES = ("hybrid", "vector", "keyword")
    # Weights chosen on SQuAD 2.0 (three samples of 1,000 questions, benchmarks/retrieval.py).
    CHUNK_VECTOR_WEIGHT = 0.5  # a chunk's mean vector blurs its sentences; their best one counts fully
    FUSED_WEIGHT, SIMILARITY_WEIGHT, OVERLAP_WEIGHT = 20.0, 2.0, 0.15  # sentence score
    SENTENCE_POOL = 30  # best chunks whose sentences compete

    def __init__(self, store: Store, embedder, candidates: int = 50, cache_file: Path | None = None):
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.bm25 = BM25Cache(store, cache_file)
        self._encoded: dict[str, tuple] = {}  # sentence vectors of chunks stored without them

    def search(self, question: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Hit]:
        """The k best chunks. `mode`: hybrid (default), vector (embeddings only) or keyword (BM25 only)."""
        fused, records, ranks, _ = self._fuse(question, max(self.candidates, 2 * k), filters, mode)
        best = sorted(fused, key=fused.get, reverse=True)[:k]
        return [self._hit(chunk_id, *records[chunk_id], fused[chunk_id], ranks[chunk_id]) for chunk_id in best]

    def sentences(self, question: str, filters: Filters | dict | None = None, mode: str = "hybrid", pool: int | None = None) -> list[Sentence]:
        """Every sentence of the `pool` best chunks, best first."""
        fused, records, ranks, similarity = self._fuse(question, self.candidates, filters, mode)
        best = sorted(fused, key=fused.get, reverse=True)[: pool or self.SENTENCE_POOL]
        question_tokens = set(tokenize(question))
        found: list[tuple[Hit, int, int, float]] = []
        missing: dict[str, float] = {}
        for chunk_id in best:
            hit = self._hit(chunk_id, *records[chunk_id], fused[chunk_id], ranks[chunk_id])
            spans = self._sentence_spans(chunk_id, records[chunk_id][1])
            sims = similarity.get(chunk_id, np.zeros(len(spans)))  # keyword mode: no query vector
            found += [(hit, s, e, float(sim)) for (s, e), sim in zip(spans, sims)]
            missing[chunk_id] = max((self.bm25.idf(t) for t in question_tokens.difference(tokenize(hit.text))), default=0.0)
        question_idf = sum(self.bm25.idf(t) for t in question_tokens) or 1.0
        scored: dict[tuple, Sentence] = {}  # overlapping chunks share sentences: keep the best copy
        for hit, s, e, sim in found:
            overlap = sum(self.bm25.idf(t) for t in question_tokens.intersection(tokenize(hit.text[s:e])))
            score = self.FUSED_WEIGHT * hit.score + self.SIMILARITY_WEIGHT * sim + self.OVERLAP_WEIGHT * overlap
            key = (hit.article_id, hit.start + s, hit.start + e)
            if key not in scored or scored[key].score < score:
                scored[key] = Sentence(hit.text[s:e], hit.start + s, hit.start + e, hit, score, sim, overlap / question_idf,
                                         missing[hit.chunk_id])
        return sorted(scored.values(), key=lambda x: x.score, reverse=True)

    def passages(self, question: str, chars: int = 2500, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Hit]:
        """The best sentences that fit in `chars` characters, as passages: sentences of one chunk
        that are next to each other become one Hit (offsets into the article, score = its best
        sentence's), best first."""
        chosen: list[Sentence] = []
        used = 0
        for sentence in self.sentences(question, filters, mode):
            cost = len(sentence.text) + 1  # +1: the space that joins it to a neighbour
            if used + cost <= chars:
                chosen.append(sentence)
                used += cost
        by_chunk: dict[str, list[Sentence]] = {}
        for sentence in chosen:
            by_chunk.setdefault(sentence.hit.chunk_id, []).append(sentence)
        passages: list[Hit] = []
        for group in by_chunk.values():
            group.sort(key=lambda x: x.start)
            chunk = group[0].hit
            runs = [[group[0]]]
            for sentence in group[1:]:
                between = chunk.text[runs[-1][-1].end - chunk.start : sentence.start - chunk.start]
                if between.strip():
                    runs.append([sentence])
                else:
                    runs[-1].append(sentence)
            for run in runs:
                start, end = run[0].start, run[-1].end
                passages.append(replace(chunk, text=chunk.text[start - chunk.start : end - chunk.start], start=start, end=end,
                                        score=max(x.score for x in run)))
        return sorted(passages, key=lambda h: h.score, reverse=True)

    def _fuse(self, question: str, n: int, filters, mode: str):
        """Fused scores by chunk id, their (text, metadata), per-list ranks, and each candidate's
        sentence similarities to the question (none in keyword mode)."""
        if mode not in self.MODES:
            raise ValueError(f"unknown search mode '{mode}' (choose {', '.join(self.MODES)})")
        filters = Filters.parse(filters)
        self.bm25.refresh()
        fused: dict[str, float] = {}
        records: dict[str, tuple[str, dict]] = {}
        ranks: dict[str, dict] = {}

        def add(chunk_id: str, rank: int, weight: float, name: str) -> None:
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (RRF_K + rank)
            ranks.setdefault(chunk_id, {})[name] = rank

        query = None
        if mode != "keyword":
            query = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
            rank = 0
            for chunk_id in self.store.nearest_ids(query.tolist(), n, filters.chroma_where()):
                # Text and metadata come from the cache of current chunks (no second fetch); an id
                # it lacks is an orphan of an interrupted or in-flight replacement.
                record = self.bm25.record(chunk_id)
                if record is None:
                    continue
                rank += 1
                records[chunk_id] = record
                add(chunk_id, rank, self.CHUNK_VECTOR_WEIGHT, "vector")
        if mode != "vector":
            for rank, index in enumerate(self.bm25.search(question, n, filters), start=1):
                chunk_id = self.bm25.ids[index]
                records.setdefault(chunk_id, (self.bm25.texts[index], self.bm25.metas[index]))
                add(chunk_id, rank, 1.0, "bm25")
        similarity: dict[str, np.ndarray] = {}
        if query is not None and records:
            candidates = list(records)
            rows = [self._sentence_rows(c, *records[c]) for c in candidates]
            starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
            sims = rows_to_vectors(np.vstack(rows)) @ query
            similarity = dict(zip(candidates, np.split(sims, starts[1:])))  # sentences() reuses them
            best = np.maximum.reduceat(sims, starts)  # each chunk's best sentence
            for rank, i in enumerate(np.argsort(-best, kind="stable")[:n], start=1):
                add(candidates[i], rank, 1.0, "sentence")
        return fused, records, ranks, similarity

    def _sentence_spans(self, chunk_id: str, meta: dict) -> list[tuple[int, int]]:
        """Sentence offsets relative to the chunk, in the order of its sentence vectors."""
        return self._encoded[chunk_id][0] if chunk_id in self._encoded else sentence_offsets(meta)

    def _sentence_rows(self, chunk_id: str, text: str, meta: dict):
        """Packed sentence vectors from the cache of current chunks; chunks stored by an older
        version have none, and get them encoded here once per process."""
        rows = self.bm25.sentence_rows(chunk_id)
        if rows is not None:
            return rows
        if chunk_id not in self._encoded:
            found = sentence_spans(text) or [(0, len(text))]
            vectors = np.asarray(self.embedder.embed([text[s:e] for s, e in found]), dtype=np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            if len(self._encoded) > 100_000:
                self._encoded.clear()
            self._encoded[chunk_id] = (found, sentence_rows(pack_sentences(0, found, vectors)))
        return self._encoded[chunk_id][1]

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
