"""The Python API: one Library object per collection. The CLI and the UI are thin layers over it."""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .articles import Article, iter_files, load_file
from .chunking import chunk_text
from .config import Settings, get_settings
from .embeddings import Embedder, get_embedder
from .errors import InputError
from .questions import check_question
from .retrieval import Filters, Hit, HybridRetriever, Sentence, date_ord, is_current
from .store import ArticleRecord, Store, pack_sentences, store_errors


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    chunks_added: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.unchanged)} unchanged, {len(self.replaced)} replaced, "
            f"{len(self.rejected)} rejected ({self.chunks_added} chunks written in {self.seconds:.1f} s)"
        )


def is_server(location) -> bool:
    return str(location).startswith(("http://", "https://"))


def lexical_dir(data_dir: Path, location, collection: str) -> Path:
    """Where the lexical index of a collection lives. Embedded store: inside the store's own
    folder (`<folder>/lexical/<collection>`), so the folder is the whole library: opened from any
    working directory, copied or moved, it keeps its index. Chroma server: under the local data
    dir, one folder per server and collection (each host serving a shared server keeps its own).

    Versions before this one kept every index under the data dir of the working directory, keyed
    by a hash of the location as given: an index found there is moved in, not rebuilt."""
    import hashlib

    if is_server(location):
        key = hashlib.sha256(str(location).encode()).hexdigest()[:12]
        return Path(data_dir) / "lexical" / f"{collection}-{key}"
    folder = Path(location) / "lexical" / collection
    if not folder.exists():
        old = Path(data_dir) / "lexical" / f"{collection}-{hashlib.sha256(str(location).encode()).hexdigest()[:12]}"
        if old.is_dir():
            try:
                folder.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(old), str(folder))
            except OSError:  # read-only, or another process moved it first: the index catches up
                pass
    return folder


def _guarded(method):
    """Store failures (server down, disk) surface as one-line StoreErrors naming the store."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with store_errors(self.store.location):
            return method(self, *args, **kwargs)

    return wrapper


# Progress callback: (stage, done, total). Stages: "load" (files), "embed" (chunks embedded and stored).
Progress = Callable[[str, int, int], None]


class Library:
    """Articles in one Chroma collection, searchable by hybrid retrieval.

    `path_or_url`: a data folder (embedded Chroma) or http://host:port (Chroma server);
    default from settings (QA_CHROMA_URL, else QA_DATA_DIR, else ./.qa-data). An embedded
    library's folder holds all its data (the lexical index under `lexical/`).
    `background_index` (servers): a missing or far-behind lexical index is rebuilt in a thread
    while searches go by vectors; otherwise the first search waits for the rebuild."""

    def __init__(
        self,
        path_or_url: str | Path | None = None,
        collection: str = "articles",
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        background_index: bool = False,
    ):
        self.settings = settings or get_settings()
        location = path_or_url or self.settings.chroma_url or self.settings.data_dir
        self.embedder = embedder or get_embedder(self.settings)
        self.store = Store(location, collection, self.embedder.name, self.embedder.dim)
        if hasattr(self.embedder, "for_collection"):  # a local model with several encoders
            self.embedder = self.embedder.for_collection(self.store.recorded_encoder())
        self.retriever = HybridRetriever(self.store, self.embedder, index_dir=lexical_dir(self.settings.data_dir, location, collection),
                                         background_index=background_index)

    @property
    def collection(self) -> str:
        return self.store.name

    # --- ingest ------------------------------------------------------------------------------
    @_guarded
    def ingest(self, paths: Iterable[str | Path] | str | Path, progress: Progress | None = None) -> IngestReport:
        """Load, clean, chunk, embed and store articles from files and folders. Unchanged
        articles cost a hash comparison (no encoding); a changed one replaces its old chunks
        atomically. Articles are committed in groups, so an interrupted ingest keeps the groups
        already committed and leaves nothing half-visible."""
        started = time.perf_counter()
        if isinstance(paths, (str, Path)):
            paths = [paths]
        report = IngestReport()
        files, errors = iter_files([Path(p) for p in paths])
        articles: list[Article] = []
        for n, path in enumerate(files, start=1):
            try:
                loaded = load_file(path, max_bytes=int(self.settings.max_file_mb * 1e6))
            except InputError as exc:
                errors.append(exc)
                continue
            finally:
                if progress:
                    progress("load", n, len(files))
            errors.extend(loaded.errors)
            articles += loaded.articles
        # Only the registry records these articles touch (same id or same text): a write costs
        # the same in a growing archive.
        stored = {r.id: r for r in self.store.articles_matching([a.id for a in articles], [a.text_hash for a in articles])}
        # text hash -> who has that text: stored articles, then the new ones of this run
        by_text = {r.text_hash: (r.id, f"stored article '{r.id}' ({r.source})") for r in stored.values()}
        pending: list[tuple[Article, bool]] = []  # (article, replaces an existing one)
        seen: dict[str, str] = {}
        unchanged: dict[str, str] = {}
        for article in articles:
            if article.id in seen:
                errors.append(InputError(article.source, f"same article id '{article.id}' as {seen[article.id]}"))
                continue
            existing = stored.get(article.id)
            twin = by_text.get(article.text_hash)
            if existing and existing.content_hash == article.content_hash:
                unchanged[article.id] = article.content_hash
                report.unchanged.append(article.id)
            elif twin and twin[0] != article.id:
                errors.append(InputError(article.source, f"same text as {twin[1]}"))
                continue
            else:
                pending.append((article, existing is not None))
                by_text[article.text_hash] = (article.id, f"article '{article.id}' ({article.source})")
            seen[article.id] = article.source
        if unchanged:
            self.store.delete_stale_chunks(unchanged)  # leftovers of an interrupted earlier run
        report.rejected = [(e.source, e.reason) for e in errors]
        if pending:
            report.chunks_added = self._write(pending, progress)
            for article, replaced in pending:
                (report.replaced if replaced else report.added).append(article.id)
        report.seconds = time.perf_counter() - started
        return report

    COMMIT_CHUNKS = 1024  # chunks embedded and committed together: bounds memory, keeps progress

    def _write(self, pending: list[tuple[Article, bool]], progress: Progress | None) -> int:
        """Embed group n+1 while group n is written: the Chroma write (HNSW insert, SQLite) runs in
        a writer thread, so on a CPU box its time mostly hides behind the encoder's."""
        from concurrent.futures import ThreadPoolExecutor

        s = self.settings
        groups: list[list[tuple[Article, list]]] = [[]]
        size = total = 0
        for article, _ in pending:
            chunks = chunk_text(article.text, s.chunk_size, s.chunk_overlap)
            if size and size + len(chunks) > self.COMMIT_CHUNKS:
                groups.append([])
                size = 0
            groups[-1].append((article, chunks))
            size += len(chunks)
            total += len(chunks)
        done = 0
        encoder = getattr(self.embedder, "writer", None)  # refuses a disagreeing encoder before any write
        if encoder and self.embedder.recorded is None:
            self.store.record_encoder(encoder)
            self.embedder.recorded = encoder
        self.store.bump_stamp()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-writer") as writer:
            in_flight = None
            for group in groups:
                rows, vectors = self._embed_group(group)
                if in_flight:
                    in_flight.result()  # one group in flight: keeps commit order, bounds memory
                in_flight = writer.submit(self._commit_group, rows, vectors)
                done += len(vectors)
                if progress:
                    progress("embed", done, total)
            if in_flight:
                in_flight.result()
        self.lexical.mark_synced(self.store.bump_stamp())
        return total

    @property
    def lexical(self):
        return self.retriever.chunks.lexical

    def _commit_group(self, rows, vectors) -> None:
        """A group into the lexical index (per article: its old version's documents out, the new
        ones in), then into Chroma, whose registry flip makes the new versions current: every
        process then finds them by words and by vectors at once (index hits of a version that
        is not current yet are dropped per query). A crash between the two leaves the index
        ahead of the registry; the next process to open it catches up from the registry."""
        self.lexical.apply([(record.id, record.content_hash, chunks) for record, chunks in rows])
        self.store.write_articles(rows, vectors)
        # A new stamp per group: readers drop what they remembered of the registry, and see the
        # group now rather than at the end of a long ingest.
        self.lexical.mark_synced(self.store.bump_stamp())

    def _embed_group(self, group: list[tuple[Article, list]]):
        """Sentences are what gets encoded (one call, length-sorted across the group); a chunk's
        vector is the normalised mean of its sentences' vectors. That costs the same encoder time
        as encoding chunks, and the sentence vectors let search rank single sentences."""
        import numpy as np

        position: dict[tuple[int, int, int], int] = {}  # (article, start, end) -> row in texts
        texts: list[str] = []
        for n, (article, chunks) in enumerate(group):
            for chunk in chunks:
                for start, end in chunk.sentences or ((chunk.start, chunk.end),):
                    if (n, start, end) not in position:  # overlapping chunks share sentences
                        position[(n, start, end)] = len(texts)
                        texts.append(article.text[start:end])
        encoded = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        encoded /= np.maximum(np.linalg.norm(encoded, axis=1, keepdims=True), 1e-12)
        rows, vectors = [], []
        for n, (article, chunks) in enumerate(group):
            sentence_vectors = []
            for chunk in chunks:
                spans = chunk.sentences or ((chunk.start, chunk.end),)
                own = encoded[[position[(n, s, e)] for s, e in spans]]
                mean = own.mean(axis=0)
                vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
                sentence_vectors.append(pack_sentences(chunk.start, spans, own))
            rows.append(self._rows(article, chunks, sentence_vectors))
        return rows, np.stack(vectors)

    @staticmethod
    def _rows(article: Article, chunks: list, sentences: list[dict]) -> tuple[ArticleRecord, list[tuple[str, str, dict]]]:
        """The registry record and (id, text, metadata) per chunk. Ids derive from the content
        hash, so re-writing the same version (after a crash) overwrites instead of duplicating."""
        h = article.content_hash
        base = {"article_id": article.id, "content_hash": h, "title": article.title, "source": article.source,
                "article_chars": len(article.text)}  # the lede prior weighs news-length stories most
        if article.published:
            base |= {"published": article.published, "published_ord": date_ord(article.published)}
        record = ArticleRecord(
            id=article.id, content_hash=h, text_hash=article.text_hash, title=article.title,
            source=article.source, published=article.published, chunks=len(chunks),
            chars=len(article.text), url=article.url, author=article.author, dateline=article.dateline,
        )
        return record, [
            (f"{article.id}:{h}:{c.index}", c.text, base | {"start": c.start, "end": c.end, "index": c.index} | packed)
            for c, packed in zip(chunks, sentences)
        ]

    # --- read --------------------------------------------------------------------------------
    @_guarded
    def search(self, question: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Hit]:
        """The k best chunks for a question (hybrid vector + BM25), with offsets into the article."""
        question = check_question(question, self.settings.max_question_chars)
        return self.retriever.search(question, k=k, filters=filters, mode=mode)

    @_guarded
    def passages(self, question: str, chars: int | None = None, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Hit]:
        """The question's best sentences within `chars` characters (default QA_CONTEXT_CHARS),
        neighbours in one chunk joined into one passage: more answers per character than whole
        chunks. Each Hit's start/end are offsets into the article, as for search()."""
        from .ranking import rank_evidence

        question = check_question(question, self.settings.max_question_chars)
        return self.retriever.passages(question, chars or self.settings.context_chars, filters=filters, mode=mode,
                                       rank=rank_evidence)

    @_guarded
    def sentences(self, question: str, filters: Filters | dict | None = None, pool: int | None = None) -> list[Sentence]:
        """Every sentence of the `pool` best chunks, best first: what answers are drawn from."""
        question = check_question(question, self.settings.max_question_chars)
        return self.retriever.sentences(question, filters=filters, pool=pool)

    # --- answer ------------------------------------------------------------------------------
    @property
    def engine(self):
        """The answer chain, with the LLM backend chosen by settings (loaded on first use)."""
        if getattr(self, "_engine", None) is None:
            from .engine import Engine
            from .llms import get_llm

            self._engine = Engine(self, get_llm(self.settings), self.settings)
        return self._engine

    def ask(self, question: str, history=None, filters: Filters | dict | None = None):
        """A grounded Answer(text, kind, citations, grounded, timings): kind span, quote, fact,
        summary (an article's summary or key points), timeline (articles on a topic, newest
        first), or not_found ('The articles don't say.', with the closest passages)."""
        return self._with_index_state(self.engine.ask(question, history, filters))

    def stream(self, question: str, history=None, filters: Filters | dict | None = None):
        """Yields answer tokens (str) as they are generated, then the final Answer."""
        for item in self.engine.stream(question, history, filters):
            yield item if isinstance(item, str) else self._with_index_state(item)

    def _with_index_state(self, answer):
        """An answer found while the lexical index was rebuilding says so (vectors alone found it)."""
        if not self.retriever.chunks.keyword_ready:
            answer.signals["keyword_index_ready"] = 0.0
        return answer

    @_guarded
    def articles(self) -> list[ArticleRecord]:
        return self.store.list_articles()

    @_guarded
    def delete(self, article_id: str) -> bool:
        """Remove an article and all its chunks; False when no such article."""
        deleted = self.store.delete_article(article_id)
        if deleted:
            self.lexical.apply([(article_id, None, [])])
            self.lexical.mark_synced(self.store.bump_stamp())
        return deleted

    @_guarded
    def check(self, repair: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
        """Consistency of the store: chunks whose article is gone or was replaced (orphans, e.g.
        from an interrupted ingest), and articles whose stored chunk count differs from the
        registry's. `repair` deletes orphans and drops incomplete articles (re-ingest them) and
        brings the lexical index in line (in bulk when far behind; `progress(chunks read, chunks)`)."""
        records = {r.id: r for r in self.store.list_articles()}
        current = {article_id: r.content_hash for article_id, r in records.items()}
        ids, _texts, metas = self.store.all_chunks()
        orphans = [i for i, m in zip(ids, metas) if not is_current(m, current)]
        counts: dict[str, int] = {}
        for m in metas:
            if is_current(m, current):
                counts[m["article_id"]] = counts.get(m["article_id"], 0) + 1
        incomplete = sorted(a for a, r in records.items() if counts.get(a, 0) != r.chunks)
        held = self.lexical.articles()
        lagging = sorted({a for a, h in current.items() if held.get(a) != h} | {a for a in held if a not in current})
        if repair and (orphans or incomplete):
            for i in range(0, len(orphans), self.store.max_batch):
                self.store.chunks.delete(ids=orphans[i : i + self.store.max_batch])
            for article_id in incomplete:
                self.store.delete_article(article_id)
            self.store.bump_stamp()
        if repair and (orphans or incomplete or lagging):
            source = self.retriever.chunks
            source.progress, background = progress, source.background
            try:
                source.background = False
                source.catch_up()
            finally:
                source.progress, source.background = None, background
        return {"articles": len(records), "chunks": len(ids), "orphan_chunks": len(orphans),
                "incomplete_articles": incomplete, "index_lagging_articles": lagging,
                "repaired": bool(repair and (orphans or incomplete or lagging))}

    def _current_chunks(self, article_id: str):
        """(the article's record, its current chunks' documents and metadata); KeyError when no
        such article."""
        record = self.store.get_article(article_id)
        if record is None:
            raise KeyError(article_id)
        got = self.store.chunks.get(
            where={"$and": [{"article_id": article_id}, {"content_hash": record.content_hash}]},
            include=["documents", "metadatas"],
        )
        return record, got

    @_guarded
    def article_sentences(self, article_id: str):
        """(record, sentences in article order, their vectors): the stored sentence vectors of
        the article's current chunks (encoded here for chunks stored without them). KeyError when
        no such article."""
        import numpy as np

        from .chunking import sentence_spans
        from .overview import ArticleSentence
        from .store import rows_to_vectors, sentence_offsets, sentence_rows

        record, got = self._current_chunks(article_id)
        seen: dict[tuple[int, int], np.ndarray | None] = {}
        texts: dict[tuple[int, int], str] = {}
        for doc, meta in sorted(zip(got["documents"], got["metadatas"]), key=lambda pair: int(pair[1]["start"])):
            start = int(meta["start"])
            spans = sentence_offsets(meta) or sentence_spans(doc) or [(0, len(doc))]
            rows = sentence_rows(meta)
            vectors = rows_to_vectors(rows) if rows is not None and len(rows) == len(spans) else [None] * len(spans)
            for (s, e), vector in zip(spans, vectors):
                if (start + s, start + e) not in seen:  # overlapping chunks share sentences
                    seen[(start + s, start + e)] = vector
                    texts[(start + s, start + e)] = doc[s:e]
        missing = [key for key, vector in seen.items() if vector is None]
        if missing:
            encoded = np.asarray(self.embedder.embed([texts[key] for key in missing]), dtype=np.float32)
            seen.update(zip(missing, encoded))
        keys = sorted(seen)
        vectors = np.asarray([seen[key] for key in keys], dtype=np.float32).reshape(len(keys), -1)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return record, [ArticleSentence(texts[key], *key) for key in keys], vectors

    @_guarded
    def article_text(self, article_id: str) -> str:
        """The cleaned article text, rebuilt from its chunks (offsets index into this)."""
        record, got = self._current_chunks(article_id)
        buffer = [" "] * record.chars
        for doc, meta in zip(got["documents"], got["metadatas"]):
            buffer[meta["start"] : meta["end"]] = doc
        return "".join(buffer)
