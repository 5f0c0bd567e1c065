"""Hybrid retrieval: Chroma vector search, BM25 (a tantivy index, qa/lexical.py) and sentence
vectors, fused by reciprocal rank; then sentence-level ranking for passages that fit a character budget.

Chroma is the single source of truth. The lexical index is a derived copy on disk, updated per
article by whichever process writes, shared by the processes of one host; a serving process holds
no copy of the corpus: candidates' texts and metadata are read per query (ChunkSource).
"""

from __future__ import annotations

import datetime
import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from .chunking import sentence_spans
from .errors import InputError, StoreError
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
    article_chars: int = 0  # the whole article's length; 0 where stored by an older version
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


def sentence_key(text: str) -> str:
    """A sentence's text with spaces and case normalised: what identifies it when other chunks
    (overlapping ones, wire copy in other articles) repeat it."""
    return " ".join(text.lower().split())


def is_current(meta: dict, current: dict[str, str]) -> bool:
    """A chunk belongs to the version of its article that the registry points at."""
    return current.get(meta.get("article_id")) == meta.get("content_hash")


class ChunkSource:
    """What retrieval reads per query, with no copy of the corpus in the process: the lexical
    index (qa/lexical.py: on disk, memory-mapped, updated per article by whoever writes) for BM25
    candidates, and Chroma for the candidates' texts and metadata (one read per query, a bounded
    cache of recent ones: a chunk id names its article version, so its record never changes) and
    for which article versions are current (the registry, read per query for the candidates'
    articles only).

    Freshness: the store's stamp is read per query (one small read); when it moved, the index is
    reloaded (tantivy opens the new segments; nothing is rebuilt). When the index lags the store
    for longer than CATCH_UP_AFTER_S (another host wrote through a shared Chroma server, or a
    writer died between its Chroma write and its index commit), this process catches it up from
    the registry, article by article. A missing, damaged or far-behind index (more than
    BULK_SHARE of the articles, at least BULK_MIN) is rebuilt in bulk instead: the store read in
    pages, one index commit per page. With `background` (a server), the rebuild runs in a thread
    and searches meanwhile go by vectors alone (`keyword_ready` is False); otherwise the first
    search waits for it."""

    RECORD_CACHE = 20_000  # chunk records kept between queries (~3 KB each with sentence vectors)
    CATCH_UP_AFTER_S = 20.0
    BULK_SHARE, BULK_MIN = 0.2, 100
    PAGE = 5000  # chunks read from the store per index commit in a bulk rebuild

    def __init__(self, store: Store, folder: Path | None, background: bool = False):
        from .lexical import LexicalIndex

        self.store = store
        try:
            self.lexical = LexicalIndex(folder or Path(tempfile.mkdtemp(prefix="qa-lexical-")))
        except StoreError:  # a read-only data dir: a private index, built from the registry at the first search
            self.lexical = LexicalIndex(Path(tempfile.mkdtemp(prefix="qa-lexical-")))
        self.key: str | None = None
        self.lock = threading.Lock()
        self._records: dict[str, tuple[str, dict, np.ndarray | None]] = {}
        self._hashes: dict[str, str | None] = {}  # article id -> current content hash, for the current stamp
        self._lagging_since: float | None = None
        self._checked = False
        self.background = background
        self.progress: Callable[[int, int], None] | None = None  # (chunks read, chunks in the store) during a bulk rebuild
        self._rebuilding: threading.Thread | None = None
        self.rebuild_error: str | None = None

    @property
    def keyword_ready(self) -> bool:
        """False while a background bulk rebuild runs (the keyword leg then finds nothing)."""
        return self._rebuilding is None or not self._rebuilding.is_alive()

    def refresh(self) -> None:
        key = self.store.stamp()
        if key == self.key:
            return
        with self.lock:
            if key == self.key or not self.keyword_ready:
                return
            synced = self.lexical.synced()
            if synced != key:
                now = time.monotonic()
                if not self._checked or (self._lagging_since is not None and now - self._lagging_since > self.CATCH_UP_AFTER_S):
                    self.catch_up(key, lock_wait=0.0)  # a process writing right now will bring it in line itself
                    if not self.keyword_ready:
                        return  # rebuilding in the background: the next search after it reloads
                    synced = self.lexical.synced()
                    self._lagging_since = now if synced != key else None
                elif self._lagging_since is None:
                    self._lagging_since = now
            self._checked = True
            self._hashes = {}
            self.lexical.reload()
            if synced == key:
                self.key, self._lagging_since = key, None

    def catch_up(self, stamp: str | None = None, lock_wait: float | None = None) -> dict:
        """Bring the index in line with the registry: articles whose indexed version differs are
        re-indexed from their stored chunks, articles gone are removed; far behind, the whole
        index is rebuilt in bulk (`rebuilt`: chunks indexed; None while it runs in the
        background). Returns counts; with lock_wait given, gives up on a per-article catch-up
        (returns None counts) when another process holds the writer longer than that."""
        stamp = stamp or self.store.stamp()
        current = self.store.current_hashes()
        held = self.lexical.articles()
        stale = [a for a, h in current.items() if held.get(a) != h]
        gone = [a for a in held if a not in current]
        if len(stale) >= max(self.BULK_MIN, self.BULK_SHARE * len(current)):
            if self.background:
                self._rebuilding = threading.Thread(target=self._rebuild_logged, args=(stamp, current), daemon=True,
                                                    name="lexical-rebuild")
                self._rebuilding.start()
                return {"reindexed": None, "removed": None, "rebuilt": None}
            return {"reindexed": len(stale), "removed": len(gone), "rebuilt": self.rebuild(stamp, current)}
        changes: list = [(a, None, []) for a in gone]
        for article_id in stale:
            got = self.store.chunks.get(where={"$and": [{"article_id": article_id}, {"content_hash": current[article_id]}]},
                                        include=["documents", "metadatas"])
            changes.append((article_id, current[article_id], list(zip(got["ids"], got["documents"], got["metadatas"]))))
        try:
            if changes:
                self.lexical.apply(changes, synced=stamp, lock_wait=lock_wait)
            else:
                self.lexical.mark_synced(stamp)
        except StoreError:
            if lock_wait is None:
                raise
            return {"reindexed": None, "removed": None}
        return {"reindexed": len(stale), "removed": len(gone)}

    def rebuild(self, stamp: str | None = None, current: dict[str, str] | None = None) -> int:
        """The whole lexical index again from the store, in bulk; returns the chunks indexed."""
        stamp = stamp or self.store.stamp()
        current = self.store.current_hashes() if current is None else current
        total = self.store.chunk_count()
        report = (lambda done: self.progress(done, total)) if self.progress else None
        indexed = self.lexical.rebuild(self.store.chunk_pages(self.PAGE), current, stamp, report)
        self.key = None  # the next search reloads
        return indexed

    def _rebuild_logged(self, stamp: str, current: dict[str, str]) -> None:
        try:
            self.rebuild(stamp, current)
            self.rebuild_error = None
        except Exception as exc:  # noqa: BLE001 - a thread has no caller: keep the reason for `qa check`/logs
            self.rebuild_error = f"lexical index rebuild failed: {exc}"
            logging.getLogger(__name__).error(self.rebuild_error)
        finally:
            self.key = None

    def records(self, chunk_ids: list[str]) -> dict[str, tuple[str, dict]]:
        """(text, metadata) of the chunks among these that are current."""
        missing = [i for i in dict.fromkeys(chunk_ids) if i not in self._records]
        if missing:
            texts, metas = self.store.chunk_records(missing)
            if len(self._records) + len(missing) > self.RECORD_CACHE:
                self._records.clear()
            for chunk_id, text, meta in zip(missing, texts, metas):
                if meta:
                    rows = sentence_rows(meta, remove=True)
                    self._records[chunk_id] = (text, meta, rows)
        found = {i: self._records[i] for i in chunk_ids if i in self._records}
        articles = {m.get("article_id") for _, m, _ in found.values()}
        unknown = sorted(a for a in articles if a not in self._hashes)
        if unknown:  # the registry is read once per article and store stamp (every write renews it)
            known = self.store.current_hashes_of(unknown)
            self._hashes.update({a: known.get(a) for a in unknown})
        return {i: (t, m) for i, (t, m, _) in found.items() if is_current(m, self._hashes)}

    def forget_records(self) -> None:
        """Empty the record cache (benchmarks: the next reads go to the store)."""
        self._records.clear()

    def sentence_rows(self, chunk_id: str):
        record = self._records.get(chunk_id)
        return None if record is None else record[2]

    def search(self, query: str, n: int, filters: "Filters") -> list[tuple[str, float]]:
        if not self.keyword_ready:
            return []
        return self.lexical.search(tokenize(query), n, filters)

    def idf(self, token: str) -> float:
        return self.lexical.idf(token)

    def article_chunks(self, article_ids: list[str]) -> list[str]:
        return self.lexical.article_chunks(article_ids)


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
    rank_score: float | None = None  # the answer chain's fitted evidence score (qa/ranking.py), once ranked


def sentences_within(ranked: list[Sentence], chars: int) -> list[Sentence]:
    """The best sentences, in rank order, that fit in `chars` characters (+1 each: the space that
    joins it to a neighbour); a sentence too long for what is left is skipped, not the rest."""
    chosen: list[Sentence] = []
    used = 0
    for sentence in ranked:
        cost = len(sentence.text) + 1
        if used + cost <= chars:
            chosen.append(sentence)
            used += cost
    return chosen


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
    SECOND_LOOK_ARTICLES = 2  # best articles whose other sentences join the pool

    def __init__(self, store: Store, embedder, candidates: int = 50, index_dir: Path | None = None,
                 background_index: bool = False):
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.chunks = ChunkSource(store, index_dir, background=background_index)
        self._encoded: dict[str, tuple] = {}  # sentence vectors of chunks stored without them

    def search(self, question: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Hit]:
        """The k best chunks. `mode`: hybrid (default), vector (embeddings only) or keyword (BM25 only)."""
        fused, records, ranks, _, _ = self._fuse(question, max(self.candidates, 2 * k), filters, mode)
        best = list(fused)[:k]
        return [self._hit(chunk_id, *records[chunk_id], fused[chunk_id], ranks[chunk_id]) for chunk_id in best]

    def sentences(self, question: str, filters: Filters | dict | None = None, mode: str = "hybrid", pool: int | None = None) -> list[Sentence]:
        """Every sentence of the `pool` best chunks, best first; then a second look: the rest of
        the best articles' sentences join at the bottom (scored below every pooled sentence, with
        their own similarity and word overlap), since the chunk that answers a question is often
        not the one that matched its words (natural news questions: the answer is somewhere in
        the pool for 0.835 of them, 0.882 with the second look at two articles)."""
        fused, records, ranks, similarity, query = self._fuse(question, self.candidates, filters, mode)
        best = list(fused)[: pool or self.SENTENCE_POOL]
        question_tokens = set(tokenize(question))
        question_idf = sum(self.chunks.idf(t) for t in question_tokens) or 1.0
        # Overlapping chunks share sentences, and wire copy repeats them across articles: keep
        # the best copy of each.
        scored: dict[str, Sentence] = {}

        def add(chunk_id: str, text: str, meta: dict, sims, floor: float | None = None) -> None:
            hit = self._hit(chunk_id, text, meta, fused.get(chunk_id, 0.0), ranks.get(chunk_id, {}))
            missing = max((self.chunks.idf(t) for t in question_tokens.difference(tokenize(text))), default=0.0)
            for (s, e), sim in zip(self._sentence_spans(chunk_id, meta), sims):
                overlap = sum(self.chunks.idf(t) for t in question_tokens.intersection(tokenize(text[s:e])))
                score = self.FUSED_WEIGHT * hit.score + self.SIMILARITY_WEIGHT * float(sim) + self.OVERLAP_WEIGHT * overlap
                key = sentence_key(text[s:e])
                if floor is not None:
                    if key in scored:
                        continue
                    score = floor
                if key not in scored or scored[key].score < score:
                    scored[key] = Sentence(text[s:e], hit.start + s, hit.start + e, hit, score, float(sim), overlap / question_idf, missing)

        for chunk_id in best:
            spans = self._sentence_spans(chunk_id, records[chunk_id][1])
            add(chunk_id, *records[chunk_id], similarity.get(chunk_id, np.zeros(len(spans))))  # keyword mode: no query vector
        if query is not None and scored:
            floor = min(x.score for x in scored.values())
            articles = list(dict.fromkeys(x.hit.article_id for x in sorted(scored.values(), key=lambda x: -x.score)))
            more = [c for c in self.chunks.article_chunks(articles[: self.SECOND_LOOK_ARTICLES]) if c not in best]
            for chunk_id, record in self.chunks.records(more).items():
                add(chunk_id, *record, rows_to_vectors(self._sentence_rows(chunk_id, *record)) @ query, floor)
        return sorted(scored.values(), key=lambda x: x.score, reverse=True)

    def passages(self, question: str, chars: int = 2500, filters: Filters | dict | None = None, mode: str = "hybrid",
                 rank=None) -> list[Hit]:
        """The best sentences that fit in `chars` characters, as passages: sentences of one chunk
        that are next to each other become one Hit (offsets into the article, score = its best
        sentence's), in the order of their best sentence. `rank(question, sentences)` re-orders
        the sentences first (the answer chain's rank_evidence: on natural news questions it puts
        the answer inside 1,500 characters for 0.800 instead of 0.740)."""
        ranked = self.sentences(question, filters, mode)
        if rank is not None:
            ranked = rank(question, ranked)
        chosen = list(enumerate(sentences_within(ranked, chars)))
        by_chunk: dict[str, list[tuple[int, Sentence]]] = {}
        for place, sentence in chosen:
            by_chunk.setdefault(sentence.hit.chunk_id, []).append((place, sentence))
        passages: list[tuple[int, Hit]] = []
        for group in by_chunk.values():
            group.sort(key=lambda x: x[1].start)
            chunk = group[0][1].hit
            runs = [[group[0]]]
            for place, sentence in group[1:]:
                between = chunk.text[runs[-1][-1][1].end - chunk.start : sentence.start - chunk.start]
                if between.strip():
                    runs.append([(place, sentence)])
                else:
                    runs[-1].append((place, sentence))
            for run in runs:
                start, end = run[0][1].start, run[-1][1].end
                passages.append((min(place for place, _ in run),
                                 replace(chunk, text=chunk.text[start - chunk.start : end - chunk.start], start=start, end=end,
                                         score=max(x.score for _, x in run))))
        return [hit for _, hit in sorted(passages, key=lambda pair: pair[0])]

    def _fuse(self, question: str, n: int, filters, mode: str):
        """Fused scores by chunk id, best first, their (text, metadata), per-list ranks, each
        candidate's sentence similarities to the question, and the question's vector (none in
        keyword mode).

        A sentence that several chunks share (wire copy republished, one article quoting another,
        an update that repeats its story) counts once: in the best-sentence list only its best
        chunk is ranked, and in the order a chunk whose best sentence repeats a better chunk's
        comes after every other. Else one sentence repeated across many chunks fills the top
        (see "At a million chunks" in the README)."""
        if mode not in self.MODES:
            raise ValueError(f"unknown search mode '{mode}' (choose {', '.join(self.MODES)})")
        filters = Filters.parse(filters)
        self.chunks.refresh()
        fused: dict[str, float] = {}
        records: dict[str, tuple[str, dict]] = {}
        ranks: dict[str, dict] = {}

        def add(chunk_id: str, rank: int, weight: float, name: str) -> None:
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (RRF_K + rank)
            ranks.setdefault(chunk_id, {})[name] = rank

        query = None
        nearest: list[str] = []
        lexical: list[str] = []
        if mode != "keyword":
            query = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
            nearest = self.store.nearest_ids(query.tolist(), n, filters.chroma_where())
        if mode != "vector":
            lexical = [chunk_id for chunk_id, _ in self.chunks.search(question, n, filters)]
        # One read for both lists' texts and metadata; an id that is not current (an orphan of an
        # interrupted or in-flight replacement) is dropped.
        records.update(self.chunks.records(nearest + lexical))
        for name, found, weight in (("vector", nearest, self.CHUNK_VECTOR_WEIGHT), ("bm25", lexical, 1.0)):
            for rank, chunk_id in enumerate((i for i in found if i in records), start=1):
                add(chunk_id, rank, weight, name)
        similarity: dict[str, np.ndarray] = {}
        keys: dict[str, str] = {}  # chunk id -> the sentence_key of its best sentence
        if query is not None and records:
            candidates = list(records)
            rows = [self._sentence_rows(c, *records[c]) for c in candidates]
            starts = np.cumsum([0] + [len(r) for r in rows[:-1]])
            sims = rows_to_vectors(np.vstack(rows)) @ query
            similarity = dict(zip(candidates, np.split(sims, starts[1:])))  # sentences() reuses them
            best = np.maximum.reduceat(sims, starts)  # each chunk's best sentence
            keys = {c: self._best_sentence_key(c, records, similarity) for c in candidates}
            ranked: set[str] = set()
            for i in np.argsort(-best, kind="stable"):
                if keys[candidates[i]] not in ranked:
                    ranked.add(keys[candidates[i]])
                    add(candidates[i], len(ranked), 1.0, "sentence")
                    if len(ranked) == n:
                        break
        order = sorted(fused, key=fused.get, reverse=True)
        if keys:
            seen: set[str] = set()
            first, repeated = [], []
            for chunk_id in order:
                (repeated if keys[chunk_id] in seen else first).append(chunk_id)
                seen.add(keys[chunk_id])
            order = first + repeated
        return {c: fused[c] for c in order}, records, ranks, similarity, query

    def _best_sentence_key(self, chunk_id: str, records: dict, similarity: dict) -> str:
        """The sentence_key of the chunk's sentence most similar to the question."""
        text, meta = records[chunk_id]
        s, e = self._sentence_spans(chunk_id, meta)[int(np.argmax(similarity[chunk_id]))]
        return sentence_key(text[s:e])

    def _sentence_spans(self, chunk_id: str, meta: dict) -> list[tuple[int, int]]:
        """Sentence offsets relative to the chunk, in the order of its sentence vectors."""
        return self._encoded[chunk_id][0] if chunk_id in self._encoded else sentence_offsets(meta)

    def _sentence_rows(self, chunk_id: str, text: str, meta: dict):
        """Packed sentence vectors from the cache of current chunks; chunks stored by an older
        version have none, and get them encoded here once per process."""
        rows = self.chunks.sentence_rows(chunk_id)
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
            article_chars=int(meta.get("article_chars") or 0),
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
