"""The Python API: one Library object per collection. The CLI and the UI are thin layers over it."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Callable, Iterable

from qa.ingest.pipeline import Ingester, IngestReport, Progress
from qa.config import Settings, get_settings
from qa.errors import InputError
from qa.models.embeddings import Embedder, get_embedder
from qa.answer.questions import check_question
from qa.store.filters import Filters
from qa.retrieve.chunks import is_current
from qa.retrieve.hybrid import Hit, HybridRetriever, Sentence
from qa.store.chroma import ArticleRecord, Store, is_server, store_errors


def library_part(data_dir: Path, location, collection: str, part: str) -> Path:
    """Where a collection's own files of one kind (`part`: "feeds") live: in an embedded store's
    folder (`<folder>/<part>/<collection>`); for a Chroma server, under the local data dir, one
    folder per server and collection."""
    return _under_data_dir(data_dir, location, collection, part) if is_server(location) else Path(location) / part / collection


def _under_data_dir(data_dir: Path, location, collection: str, part: str) -> Path:
    """`<data dir>/<part>/<collection>-<hash of the location as given>`."""
    import hashlib

    return Path(data_dir) / part / f"{collection}-{hashlib.sha256(str(location).encode()).hexdigest()[:12]}"


def lexical_dir(data_dir: Path, location, collection: str) -> Path:
    """Where the lexical index of a collection lives. Embedded store: inside the store's own
    folder (`<folder>/lexical/<collection>`), so the folder is the whole library: opened from any
    working directory, copied or moved, it keeps its index. Chroma server: under the local data
    dir, one folder per server and collection (each host serving a shared server keeps its own).

    Versions before this one kept every index under the data dir of the working directory, keyed
    by a hash of the location as given: an index found there is moved in, not rebuilt."""
    folder = library_part(data_dir, location, collection, "lexical")
    if not is_server(location) and not folder.exists():
        old = _under_data_dir(data_dir, location, collection, "lexical")
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


class Library:
    """Articles in one Chroma collection, searchable by hybrid retrieval.

    `path_or_url`: a data folder (embedded Chroma) or http://host:port (Chroma server);
    default from settings (QA_CHROMA_URL, else QA_DATA_DIR, else ./.qa-data). An embedded
    library's folder holds all its data (the lexical index under `lexical/`).
    `background_index` (servers): a missing or far-behind lexical index is rebuilt in a thread
    while searches go by vectors; otherwise the first search waits for the rebuild.
    `reading` (one-shot readers: `qa ask`): an embedded store opens without chromadb's Python
    client (~0.45 s sooner); a write opens it then (see Store)."""

    def __init__(
        self,
        path_or_url: str | Path | None = None,
        collection: str = "articles",
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        background_index: bool = False,
        reading: bool = False,
    ):
        self.settings = settings or get_settings()
        location = path_or_url or self.settings.chroma_url or self.settings.data_dir
        self.embedder = embedder or get_embedder(self.settings)
        self.store = Store(location, collection, self.embedder.name, self.embedder.dim, reading=reading)
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
        """Load, clean, chunk, embed and store articles from files and folders (qa/ingest/pipeline.py).
        Unchanged articles cost a hash comparison (no encoding); a changed one replaces its old
        chunks atomically. Articles are committed in groups, so an interrupted ingest keeps the
        groups already committed and leaves nothing half-visible."""
        return Ingester(self.store, self.lexical, self.embedder, self.settings).ingest(paths, progress)

    @property
    def lexical(self):
        return self.retriever.lexical

    # --- feeds (qa/ingest/feeds.py) ---------------------------------------------------------------
    @property
    def feeds(self):
        """The feeds this library follows and their state, kept in its folder."""
        if getattr(self, "_feeds", None) is None:
            from qa.ingest.feeds import FeedBook

            self._feeds = FeedBook(library_part(self.settings.data_dir, self.store.location, self.collection, "feeds") / "feeds.sqlite3")
        return self._feeds

    def follow(self, url: str, every: str | float = "15m"):
        """Follow an RSS/Atom feed: fetched once now to check it is one (InputError naming the URL
        when not), then polled every `every` by `qa watch` / `qa serve` (poll_feeds)."""
        from qa.ingest.feeds import parse_every
        from qa.ingest.fetch import FEED_TYPES, TEXT_TYPES, Fetcher
        from qa.ingest.web import is_feed, parse_feed

        seconds = parse_every(every)
        with Fetcher.from_settings(self.settings) as fetcher:
            fetched = fetcher.get(url, accept=FEED_TYPES + TEXT_TYPES + ("text/html",))
        if not is_feed(fetched.content):
            raise InputError(url, "not an RSS or Atom feed (to add one article, ingest its URL)")
        feed = parse_feed(fetched, url)
        return self.feeds.add(url, seconds, feed.title)

    def unfollow(self, url: str) -> bool:
        return self.feeds.remove(url)

    @_guarded
    def poll_feeds(self, only: list[str] | None = None) -> list[tuple[str, object]]:
        """Poll the feeds that are due (or `only` these, now): (URL, IngestReport, None when
        unchanged (304), or the error's reason) per feed polled. Feeds another process is
        polling are skipped."""
        from qa.ingest.feeds import poll
        from qa.ingest.fetch import Fetcher

        with Fetcher.from_settings(self.settings) as fetcher:
            ingester = Ingester(self.store, self.lexical, self.embedder, self.settings, fetcher)
            return poll(self.feeds, ingester, fetcher, only=only)

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
        from qa.retrieve.ranking import rank_evidence

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
            from qa.answer.chain import Engine
            from qa.models.backends import get_llm

            self._engine = Engine(self, get_llm(self.settings), self.settings)
        return self._engine

    def ask(self, question: str, history=None, filters: Filters | dict | None = None):
        """A grounded Answer(text, kind, citations, grounded, timings): kind span, quote, fact,
        summary (an article's summary or key points), timeline (articles on a topic, newest
        first), or not_found ('The articles don't say.', with the closest passages). A citation
        carries its article's URL and the wire copies of its story by other outlets (`also`)."""
        return self.engine.ask(question, history, filters)

    def stream(self, question: str, history=None, filters: Filters | dict | None = None):
        """Yields answer tokens (str) as they are generated, then the final Answer."""
        yield from self.engine.stream(question, history, filters)

    @_guarded
    def finish_answer(self, answer):
        """URLs and other publishers on the citations; an answer found while the lexical index was
        rebuilding says so (vectors alone found it)."""
        if not self.retriever.chunks.keyword_ready:
            answer.signals["keyword_index_ready"] = 0.0
        cited = answer.citations + answer.closest
        ids = list(dict.fromkeys(c.article_id for c in cited))
        if ids:
            records = self.store.get_articles(ids)
            copies: dict[str, list] = {}
            for copy in self.store.copies_of(ids):
                copies.setdefault(copy.story, []).append(
                    {"outlet": copy.outlet or copy.source, "url": copy.url, "published": copy.published, "title": copy.title})
            for citation in cited:
                record = records.get(citation.article_id)
                citation.url = citation.url or (record.url if record else None)
                citation.also = copies.get(citation.article_id, [])
        return answer

    @_guarded
    def articles(self) -> list[ArticleRecord]:
        return self.store.list_articles()

    @_guarded
    def delete(self, article_id: str) -> bool:
        """Remove an article and all its chunks; False when no such article. Deleting a story with
        wire copies makes its earliest copy the story (written with its chunks before the old one
        goes: a crash in between leaves the story twice, never lost)."""
        record = self.store.get_article(article_id)
        if record is None:
            return False
        copies = [] if record.story else self.store.copies_of([article_id])
        if copies:
            self._promote(copies[0], [c.id for c in copies[1:]])
        deleted = self.store.delete_article(article_id)
        if deleted and not record.story:
            self.lexical.apply([(article_id, None, [])])
            self.lexical.mark_synced(self.store.bump_stamp())
        return deleted

    def _promote(self, copy: ArticleRecord, others: list[str]) -> None:
        """A wire copy becomes the story: its kept text chunked, embedded and stored; the other
        copies point to it."""
        from qa.ingest import wire
        from qa.ingest.articles import Article

        text = self.store.copy_text(copy.id) or ""
        article = Article(id=copy.id, text=text, title=copy.title, source=copy.source, url=copy.url,
                          published=copy.published, author=copy.author, dateline=copy.dateline,
                          extra={"outlet": copy.outlet})
        signature = wire.signature(text)
        article.extra["wire"] = wire.bands(signature) if signature is not None else None
        Ingester(self.store, self.lexical, self.embedder, self.settings)._write([(article, True)], None)
        self.store.repoint_copies(others, copy.id)

    @_guarded
    def check(self, repair: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
        """Consistency of the store: chunks whose article is gone or was replaced (orphans, e.g.
        from an interrupted ingest), and articles whose stored chunk count differs from the
        registry's. `repair` deletes orphans and drops incomplete articles (re-ingest them) and
        brings the lexical index in line (in bulk when far behind; `progress(chunks read, chunks)`)."""
        records = {r.id: r for r in self.store.list_articles() if not r.story}  # wire copies have no chunks
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
            self.retriever.chunks.catch_up(wait=True, progress=progress)
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

        from qa.text.chunking import sentence_spans
        from qa.answer.overview import ArticleSentence
        from qa.store.chroma import rows_to_vectors, sentence_offsets, sentence_rows

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
