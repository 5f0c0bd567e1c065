"""The ingest pipeline: files read and cleaned (qa/ingest/articles.py), checked against the
registry (unchanged articles cost a hash comparison, a twin text is refused), chunked, encoded
sentence by sentence, and committed in groups to the lexical index and then to Chroma, whose
registry flip makes each new version current."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from qa.config import Settings
from qa.errors import InputError
from qa.ingest.articles import Article, iter_files, load_file
from qa.store.chroma import ArticleRecord, Store, pack_sentences
from qa.store.filters import date_ord
from qa.store.lexical import LexicalIndex
from qa.text.chunking import chunk_text


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    copies: list[tuple[str, str]] = field(default_factory=list)  # wire copies stored: (article id, story id)
    chunks_added: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected

    def summary(self) -> str:
        copies = f", {len(self.copies)} wire copies of stored stories" if self.copies else ""
        return (
            f"{len(self.added)} added, {len(self.unchanged)} unchanged, {len(self.replaced)} replaced, "
            f"{len(self.rejected)} rejected{copies} ({self.chunks_added} chunks written in {self.seconds:.1f} s)"
        )


# Progress callback: (stage, done, total). Stages: "load" (files), "fetch" (URLs), "embed" (chunks embedded and stored).
Progress = Callable[[str, int, int], None]


class Ingester:
    """Writes articles into one collection: its store, its lexical index, with its embedder."""

    def __init__(self, store: Store, lexical: LexicalIndex, embedder, settings: Settings, fetcher=None):
        self.store, self.lexical, self.embedder, self.settings = store, lexical, embedder, settings
        self.fetcher = fetcher  # for URLs (qa/ingest/fetch.py); made from settings when needed

    def ingest(self, paths: Iterable[str | Path] | str | Path, progress: Progress | None = None) -> IngestReport:
        """Load, clean, chunk, embed and store articles from files, folders and URLs (article
        pages or RSS/Atom feeds). Unchanged articles cost a hash comparison (no encoding); a
        changed one replaces its old chunks atomically; a wire copy of a stored story is stored
        as another publisher of it. Articles are committed in groups, so an interrupted ingest
        keeps the groups already committed and leaves nothing half-visible."""
        from qa.ingest.web import is_url

        started = time.perf_counter()
        if isinstance(paths, (str, Path)):
            paths = [paths]
        paths = list(paths)
        report = IngestReport()
        urls = [str(p) for p in paths if is_url(p)]
        files, errors = iter_files([Path(p) for p in paths if not is_url(p)])
        articles: list[Article] = []
        if urls:
            loaded = self._load_urls(urls, progress)
            errors.extend(loaded.errors)
            articles += loaded.articles
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
        return self.store_articles(articles, errors, progress, report, started)

    def store_articles(self, articles: list[Article], errors: list[InputError] | None = None,
                       progress: Progress | None = None, report: IngestReport | None = None,
                       started: float | None = None) -> IngestReport:
        """Store loaded articles (what ingest() does after loading): unchanged ones cost a hash
        comparison, twins and wire copies are recognised, the rest chunked, embedded, committed."""
        started = time.perf_counter() if started is None else started
        report = report or IngestReport()
        errors = list(errors or [])
        # Only the registry records these articles touch (same id or same text): a write costs
        # the same in a growing archive.
        stored = {r.id: r for r in self.store.articles_matching([a.id for a in articles], [a.text_hash for a in articles])}
        # text hash -> (story id, who has that text, their URL): stored articles, then this run's new ones
        by_text = {r.text_hash: (r.story or r.id, f"stored article '{r.id}' ({r.source})", r.url) for r in stored.values()}
        pending: list[tuple[Article, bool]] = []  # (article, replaces an existing one)
        copies: list[tuple[Article, str]] = []  # (article, the story it is a wire copy of)
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
            elif twin and twin[0] != article.id and article.url and twin[2] and twin[2] != article.url:
                copies.append((article, twin[0]))  # an exact re-post by another outlet: found by one lookup
            elif twin and twin[0] != article.id:
                errors.append(InputError(article.source, f"same text as {twin[1]}"))
                continue
            else:
                pending.append((article, existing is not None))
                by_text[article.text_hash] = (article.id, f"article '{article.id}' ({article.source})", article.url)
            seen[article.id] = article.source
        if unchanged:
            self.store.delete_stale_chunks(unchanged)  # leftovers of an interrupted earlier run
        pending, near = self._wire_copies(pending, stored)
        copies += near
        report.rejected = [(e.source, e.reason) for e in errors]
        if pending:
            report.chunks_added = self._write(pending, progress)
            for article, replaced in pending:
                (report.replaced if replaced else report.added).append(article.id)
        if copies:  # after the stories: a copy never points at a story not stored yet
            self._write_copies(copies, stored)
            report.copies = [(article.id, story) for article, story in copies]
        report.seconds = time.perf_counter() - started
        return report

    def _load_urls(self, urls: list[str], progress: Progress | None):
        from qa.ingest.fetch import Fetcher
        from qa.ingest.web import load_urls

        if self.fetcher is not None:
            return load_urls(urls, self.fetcher, progress)
        with Fetcher.from_settings(self.settings) as fetcher:
            return load_urls(urls, fetcher, progress)

    def _wire_copies(self, pending: list[tuple[Article, bool]], stored: dict[str, ArticleRecord]):
        """Split new articles into stories and near-duplicates of stories (qa/ingest/wire.py):
        candidates are stored stories sharing an LSH band (one indexed registry read for the whole
        run) and this run's earlier stories. A stored story's new version stays a story. Each
        story gets its signature, so later copies find it."""
        from qa.ingest import wire

        signatures = {article.id: wire.signature(article.text) for article, _ in pending}
        metas = {i: wire.bands(sig) for i, sig in signatures.items() if sig is not None}
        story_updates = {article.id for article, replaced in pending if replaced and not stored[article.id].story}
        where = wire.band_query([metas[article.id] for article, _ in pending
                                 if article.id in metas and article.id not in story_updates])
        known = [(i, wire.signature_of(m)) for i, m in self.store.wire_candidates(where)] if where else []
        stories, copies = [], []
        for article, replaced in pending:
            sig = signatures[article.id]
            match = None if sig is None or article.id in story_updates else wire.best_match(
                sig, [(i, s) for i, s in known if i != article.id])
            if match:
                copies.append((article, match[0]))
                continue
            article.extra["wire"] = metas.get(article.id)
            stories.append((article, replaced))
            if sig is not None:
                known.append((article.id, sig))
        return stories, copies

    def _write_copies(self, copies: list[tuple[Article, str]], stored: dict[str, ArticleRecord]) -> None:
        records = []
        for article, story in copies:
            record = self._record(article, chunks=0)
            record.story = story
            records.append((record, article.text))
        self.store.write_copies(records)
        # One that was a story before lost its chunks: the lexical index drops them too.
        was_story = [article.id for article, _ in copies if article.id in stored and not stored[article.id].story]
        if was_story:
            self.lexical.apply([(article_id, None, []) for article_id in was_story])
        self.store.bump_stamp()

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
    def _record(article: Article, chunks: int) -> ArticleRecord:
        return ArticleRecord(
            id=article.id, content_hash=article.content_hash, text_hash=article.text_hash, title=article.title,
            source=article.source, published=article.published, chunks=chunks, chars=len(article.text),
            url=article.url, author=article.author, dateline=article.dateline, outlet=article.extra.get("outlet"),
            wire=article.extra.get("wire"),
        )

    @staticmethod
    def _rows(article: Article, chunks: list, sentences: list[dict]) -> tuple[ArticleRecord, list[tuple[str, str, dict]]]:
        """The registry record and (id, text, metadata) per chunk. Ids derive from the content
        hash, so re-writing the same version (after a crash) overwrites instead of duplicating."""
        h = article.content_hash
        base = {"article_id": article.id, "content_hash": h, "title": article.title, "source": article.source,
                "article_chars": len(article.text)}  # the lede prior weighs news-length stories most
        if article.published:
            base |= {"published": article.published, "published_ord": date_ord(article.published)}
        record = Ingester._record(article, len(chunks))
        return record, [
            (f"{article.id}:{h}:{c.index}", c.text, base | {"start": c.start, "end": c.end, "index": c.index} | packed)
            for c, packed in zip(chunks, sentences)
        ]
