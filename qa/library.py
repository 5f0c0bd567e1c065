"""The Python API: one Library object per collection. The CLI and the UI are thin layers over it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .articles import Article, iter_files, load_file
from .chunking import chunk_text
from .config import Settings, get_settings
from .embeddings import Embedder, get_embedder
from .errors import InputError
from .retrieval import Filters, Hit, HybridRetriever, date_ord, is_current
from .store import ArticleRecord, Store


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


# Progress callback: (stage, done, total). Stages: "load", "embed", "write".
Progress = Callable[[str, int, int], None]


class Library:
    """Articles in one Chroma collection, searchable by hybrid retrieval.

    `path_or_url`: a data folder (embedded Chroma) or http://host:port (Chroma server);
    default from settings (QA_CHROMA_URL, else QA_DATA_DIR, else ./.qa-data)."""

    def __init__(
        self,
        path_or_url: str | Path | None = None,
        collection: str = "articles",
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
    ):
        self.settings = settings or get_settings()
        location = path_or_url or self.settings.chroma_url or self.settings.data_dir
        self.embedder = embedder or get_embedder(self.settings)
        self.store = Store(location, collection, self.embedder.name, self.embedder.dim)
        self.retriever = HybridRetriever(self.store, self.embedder)

    @property
    def collection(self) -> str:
        return self.store.name

    # --- ingest ------------------------------------------------------------------------------
    def ingest(self, paths: Iterable[str | Path] | str | Path, progress: Progress | None = None) -> IngestReport:
        """Load, clean, chunk, embed and store articles from files and folders. Unchanged
        articles cost one lookup; a changed one replaces its old chunks atomically."""
        started = time.perf_counter()
        if isinstance(paths, (str, Path)):
            paths = [paths]
        report = IngestReport()
        files, errors = iter_files([Path(p) for p in paths])
        pending: list[tuple[Article, bool]] = []  # (article, replaces an existing one)
        seen: dict[str, str] = {}
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
            for article in loaded.articles:
                if article.id in seen:
                    errors.append(InputError(article.source, f"same article id '{article.id}' as {seen[article.id]}"))
                    continue
                seen[article.id] = article.source
                verdict = self._classify(article)
                if isinstance(verdict, InputError):
                    errors.append(verdict)
                elif verdict == "unchanged":
                    report.unchanged.append(article.id)
                else:
                    pending.append((article, verdict == "replaced"))
        report.rejected = [(e.source, e.reason) for e in errors]
        if pending:
            report.chunks_added = self._write(pending, progress)
            for article, replaced in pending:
                (report.replaced if replaced else report.added).append(article.id)
        report.seconds = time.perf_counter() - started
        return report

    def _classify(self, article: Article) -> str | InputError:
        existing = self.store.get_article(article.id)
        if existing and existing.content_hash == article.content_hash:
            self.store.delete_stale_chunks(article.id, article.content_hash)  # leftovers of a crash
            return "unchanged"
        twin = self.store.find_by_text_hash(article.text_hash)
        if twin and twin.id != article.id:
            return InputError(article.source, f"same text as stored article '{twin.id}' ({twin.source})")
        return "replaced" if existing else "added"

    def _write(self, pending: list[tuple[Article, bool]], progress: Progress | None) -> int:
        s = self.settings
        chunked = [(article, chunk_text(article.text, s.chunk_size, s.chunk_overlap)) for article, _ in pending]
        texts = [c.text for _, chunks in chunked for c in chunks]
        vectors: list[list[float]] = []
        step = 512  # embed in slices so the progress bar moves; each slice is length-sorted
        for i in range(0, len(texts), step):
            vectors.extend(self.embedder.embed(texts[i : i + step]))
            if progress:
                progress("embed", min(i + step, len(texts)), len(texts))
        self.store.bump_stamp()
        cursor = 0
        for n, (article, chunks) in enumerate(chunked, start=1):
            h = article.content_hash
            base = {"article_id": article.id, "content_hash": h, "title": article.title, "source": article.source}
            if article.published:
                base |= {"published": article.published, "published_ord": date_ord(article.published)}
            self.store.write_article(
                ArticleRecord(
                    id=article.id,
                    content_hash=h,
                    text_hash=article.text_hash,
                    title=article.title,
                    source=article.source,
                    published=article.published,
                    chunks=len(chunks),
                    chars=len(article.text),
                    url=article.url,
                    author=article.author,
                    dateline=article.dateline,
                ),
                ids=[f"{article.id}:{h}:{c.index}" for c in chunks],
                embeddings=vectors[cursor : cursor + len(chunks)],
                documents=[c.text for c in chunks],
                metadatas=[base | {"start": c.start, "end": c.end, "index": c.index} for c in chunks],
            )
            cursor += len(chunks)
            if progress:
                progress("write", n, len(chunked))
        self.store.bump_stamp()
        return len(texts)

    # --- read --------------------------------------------------------------------------------
    def search(self, question: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Hit]:
        """The k best chunks for a question (hybrid vector + BM25), with offsets into the article."""
        if not question or not question.strip():
            raise ValueError("question is empty")
        return self.retriever.search(question.strip(), k=k, filters=filters, mode=mode)

    # --- answer ------------------------------------------------------------------------------
    @property
    def engine(self):
        """The answer chain, with the LLM backend chosen by settings (loaded on first use)."""
        if getattr(self, "_engine", None) is None:
            from .engine import Engine
            from .llms import get_llm

            self._engine = Engine(self, get_llm(self.settings), self.settings)
        return self._engine

    def ask(self, question: str, history=None):
        """A grounded Answer(text, citations, grounded, timings); 'The articles don't say.' when
        the articles do not hold the answer."""
        return self.engine.ask(question, history)

    def stream(self, question: str, history=None):
        """Yields answer tokens (str) as they are generated, then the final Answer."""
        return self.engine.stream(question, history)

    def articles(self) -> list[ArticleRecord]:
        return self.store.list_articles()

    def delete(self, article_id: str) -> bool:
        """Remove an article and all its chunks; False when no such article."""
        deleted = self.store.delete_article(article_id)
        if deleted:
            self.store.bump_stamp()
        return deleted

    def check(self, repair: bool = False) -> dict:
        """Consistency of the store: chunks whose article is gone or was replaced (orphans, e.g.
        from an interrupted ingest), and articles whose stored chunk count differs from the
        registry's. `repair` deletes orphans and drops incomplete articles (re-ingest them)."""
        records = {r.id: r for r in self.store.list_articles()}
        current = {article_id: r.content_hash for article_id, r in records.items()}
        ids, _texts, metas = self.store.all_chunks()
        orphans = [i for i, m in zip(ids, metas) if not is_current(m, current)]
        counts: dict[str, int] = {}
        for m in metas:
            if is_current(m, current):
                counts[m["article_id"]] = counts.get(m["article_id"], 0) + 1
        incomplete = sorted(a for a, r in records.items() if counts.get(a, 0) != r.chunks)
        if repair and (orphans or incomplete):
            for i in range(0, len(orphans), self.store.max_batch):
                self.store.chunks.delete(ids=orphans[i : i + self.store.max_batch])
            for article_id in incomplete:
                self.store.delete_article(article_id)
            self.store.bump_stamp()
        return {"articles": len(records), "chunks": len(ids), "orphan_chunks": len(orphans),
                "incomplete_articles": incomplete, "repaired": bool(repair and (orphans or incomplete))}

    def article_text(self, article_id: str) -> str:
        """The cleaned article text, rebuilt from its chunks (offsets index into this)."""
        record = self.store.get_article(article_id)
        if record is None:
            raise KeyError(article_id)
        got = self.store.chunks.get(
            where={"$and": [{"article_id": article_id}, {"content_hash": record.content_hash}]},
            include=["documents", "metadatas"],
        )
        buffer = [" "] * record.chars
        for doc, meta in zip(got["documents"], got["metadatas"]):
            buffer[meta["start"] : meta["end"]] = doc
        return "".join(buffer)
