"""Hybrid retrieval: Chroma vector search, BM25 (a tantivy index, qa/store/lexical.py) and sentence
vectors, fused by reciprocal rank; then sentence-level ranking for passages that fit a character budget.

Chroma is the single source of truth. The lexical index is a derived copy on disk, updated per
article by whichever process writes, shared by the processes of one host; a serving process holds
no copy of the corpus: candidates' texts and metadata are read per query (ChunkSource).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from qa.text.chunking import sentence_spans
from qa.text.tokens import tokenize
from qa.retrieve.chunks import ChunkSource
from qa.store.filters import Filters
from qa.store.chroma import Store, pack_sentences, rows_to_vectors, sentence_offsets, sentence_rows

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


def sentence_key(text: str) -> str:
    """A sentence's text with spaces and case normalised: what identifies it when other chunks
    (overlapping ones, wire copy in other articles) repeat it."""
    return " ".join(text.lower().split())


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
    rank_score: float | None = None  # the answer chain's fitted evidence score (qa/retrieve/ranking.py), once ranked


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


def joined_passages(chosen: list[Sentence]) -> list[Hit]:
    """Chosen sentences as passages: those of one chunk with nothing between them become one Hit
    (offsets into the article, score = its best sentence's), in the order of their best sentence."""
    by_chunk: dict[str, list[tuple[int, Sentence]]] = {}
    for place, sentence in enumerate(chosen):
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


def llamaindex_retriever(retriever: "HybridRetriever", k: int = 5):
    """A retriever as a LlamaIndex BaseRetriever (for query engines and evals)."""
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

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
                for h in retriever.search(query_bundle.query_str, k=k)
            ]

    return _Retriever()


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


    @property
    def lexical(self):
        """The lexical index this retriever reads (writers update it per article)."""
        return self.chunks.lexical

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
        return joined_passages(sentences_within(ranked, chars))

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
        return llamaindex_retriever(self, k)
