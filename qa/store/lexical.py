"""The lexical (BM25) index: tantivy, on disk, updated per article, shared by the processes of one host.

Chroma stays the source of truth; this index is a derived copy of the *current* chunks (those of
the version the article registry points at). A write (ingest, replace, delete) updates it per
article — delete the article's documents, add the new version's — and commits; readers in other
processes see the commit on their next search (`reload()`, no rebuild). Segments are memory-mapped
by tantivy, so a serving process holds no copy of the corpus.

The index also holds one small document per article (kind "article": its id and content hash),
so `catch_up()` can compare it with the registry and repair what an interrupted write left behind
(a crash between the Chroma write and the index commit), without reading any chunk that agrees.
The store stamp the index last agreed with is kept beside it (`synced`): when it equals the
store's, nothing needs checking.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

from qa.errors import StoreError

FORMAT = "lexical-v1"  # bump when the schema or the tokenization changes: the index is rebuilt from the store


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("kind", stored=False, tokenizer_name="raw")  # chunk | article
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("article_id", stored=True, tokenizer_name="raw")
    builder.add_text_field("content_hash", stored=True, tokenizer_name="raw")
    # Our own tokens (retrieval.tokenize: lower-cased, Snowball-stemmed, no stop words), joined by
    # spaces: questions and chunks are tokenized alike, and support/overlap measures reuse them.
    builder.add_text_field("words", stored=False, tokenizer_name="whitespace", index_option="freq")
    builder.add_integer_field("published_ord", stored=False, indexed=True, fast=True)
    builder.add_text_field("source", stored=False, tokenizer_name="raw")
    return builder.build()


class LexicalIndex:
    WRITER_HEAP = 64_000_000  # bytes tantivy buffers before flushing a segment
    LOCK_WAIT_S = 60.0  # another process writing: wait this long for its commit

    def __init__(self, folder: Path):
        import tantivy

        self.folder = Path(folder)
        self._tantivy = tantivy
        self.schema = _schema()
        self._lock = threading.Lock()  # one writer per process; tantivy's lock file covers other processes
        marker = self.folder / "format"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if marker.exists() and marker.read_text().strip() != FORMAT:
                self._wipe()
            try:
                self.index = tantivy.Index(self.schema, path=str(self.folder), reuse=True)
            except ValueError:  # unreadable (damaged, or another schema): a derived copy, so start it again
                self._wipe()
                self.index = tantivy.Index(self.schema, path=str(self.folder), reuse=True)
            marker.write_text(FORMAT)
        except (OSError, ValueError) as exc:
            raise StoreError(f"lexical index {self.folder}: {exc}") from None
        self._searcher = None
        self._chunks = 0
        self._idf = {}

    def _wipe(self) -> None:
        for path in self.folder.iterdir():
            if path.is_file():
                path.unlink()

    # --- read ----------------------------------------------------------------------------------
    def reload(self) -> None:
        """See the latest commit (of this process or another)."""
        self.index.reload()
        self._searcher = self.index.searcher()
        self._idf: dict[str, float] = {}
        self._chunks = self._searcher.search(self._term("kind", "chunk"), 1, count=True).count

    def searcher(self):
        if self._searcher is None:
            self.reload()
        return self._searcher

    @property
    def chunk_count(self) -> int:
        self.searcher()
        return self._chunks

    def _term(self, field: str, value: str):
        return self._tantivy.Query.term_query(self.schema, field, value)

    def search(self, tokens: list[str], n: int, filters=None) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of the n best chunks holding any of the tokens, best first."""
        Query, Occur = self._tantivy.Query, self._tantivy.Occur
        words = sorted(set(tokens))
        if not words or n < 1:
            return []
        searcher = self.searcher()
        # Only chunks have words (an article's document has none), so no "kind" clause: a query of
        # term clauses alone lets tantivy skip blocks that cannot reach the top n (block-max WAND).
        query = Query.boolean_query([(Occur.Should, self._term("words", w)) for w in words])
        clauses = [(Occur.Must, Query.const_score_query(c, 0.0)) for c in self._filter_clauses(filters)]
        if clauses:
            query = Query.boolean_query([(Occur.Must, query)] + clauses)
        result = searcher.search(query, n)
        return [(searcher.doc(address)["chunk_id"][0], float(score)) for score, address in result.hits]

    def _filter_clauses(self, filters) -> list:
        if filters is None:
            return []
        Query, FieldType = self._tantivy.Query, self._tantivy.FieldType
        from qa.store.filters import date_ord

        clauses = []
        if filters.article_id:
            clauses.append(self._term("article_id", filters.article_id))
        if filters.source:
            clauses.append(self._term("source", filters.source))
        if filters.date_from or filters.date_to:
            low = date_ord(filters.date_from) if filters.date_from else 0
            high = date_ord(filters.date_to) if filters.date_to else 99_991_231
            clauses.append(Query.range_query(self.schema, "published_ord", FieldType.Integer, low, high, True, True))
        return clauses

    def idf(self, token: str) -> float:
        """log(1 + chunks / chunks with the token): how much sharing this word says (remembered
        until the next reload: one query asks for each of its words many times)."""
        known = self._idf.get(token)
        if known is None:
            frequency = self.searcher().doc_freq("words", token)
            known = self._idf[token] = math.log(1 + self._chunks / frequency) if frequency else 0.0
        return known

    def article_chunks(self, article_ids: list[str]) -> list[str]:
        """The indexed (current) chunk ids of these articles."""
        Query, Occur = self._tantivy.Query, self._tantivy.Occur
        searcher = self.searcher()
        found = []
        for article_id in article_ids:
            query = Query.boolean_query([(Occur.Must, self._term("article_id", article_id)), (Occur.Must, self._term("kind", "chunk"))])
            result = searcher.search(query, 10_000)
            found += sorted(searcher.doc(address)["chunk_id"][0] for _, address in result.hits)
        return found

    def articles(self) -> dict[str, str]:
        """article id -> the content hash the index holds, as of the latest commit (repair and
        checks only: reads them all)."""
        self.reload()
        searcher = self.searcher()
        total = searcher.search(self._term("kind", "article"), 1, count=True).count
        if not total:
            return {}
        result = searcher.search(self._term("kind", "article"), total)
        held = {}
        for _, address in result.hits:
            doc = searcher.doc(address)
            held[doc["article_id"][0]] = doc["content_hash"][0]
        return held

    # --- write ---------------------------------------------------------------------------------
    def apply(self, changes: list[tuple[str, str | None, list[tuple[str, str, dict]]]], synced: str | None = None,
              lock_wait: float | None = None) -> None:
        """Per article: (article id, its current content hash or None when deleted, its chunks as
        (id, text, metadata)). One commit for all of them; `synced`: the store stamp the index
        now agrees with. Waits for another process's writer, up to `lock_wait` seconds (default
        LOCK_WAIT_S), then raises StoreError."""
        with self._lock:
            writer = self._writer(self.LOCK_WAIT_S if lock_wait is None else lock_wait)
            try:
                for article_id, content_hash, chunks in changes:
                    writer.delete_documents_by_term("article_id", article_id)
                    if content_hash is None:
                        continue
                    writer.add_document(self._tantivy.Document(kind="article", article_id=article_id, content_hash=content_hash))
                    self._add_chunks(writer, chunks, article_id, content_hash)
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()  # also drops the writer: its lock file is released
        if synced is not None:
            self.mark_synced(synced)
        self._searcher = None

    def _add_chunks(self, writer, chunks: list[tuple[str, str, dict]], article_id: str | None = None,
                    content_hash: str | None = None) -> None:
        """Chunk documents for (id, text, metadata) rows; the article and version from the
        metadata unless given."""
        from qa.text.tokens import bm25s_tokenize

        Document = self._tantivy.Document
        tokens = bm25s_tokenize([f"{m.get('title', '')}\n{t}" for _, t, m in chunks])
        for (chunk_id, _text, meta), words in zip(chunks, tokens):
            fields = {"kind": "chunk", "chunk_id": chunk_id, "article_id": article_id or meta["article_id"],
                      "content_hash": content_hash or meta["content_hash"], "words": " ".join(words), "source": meta.get("source") or ""}
            if meta.get("published_ord") is not None:
                fields["published_ord"] = int(meta["published_ord"])
            writer.add_document(Document(**fields))

    def rebuild(self, pages, current: dict[str, str], synced: str, progress=None) -> int:
        """The whole index again from the store, in bulk: `pages` yields (ids, texts, metadata) as
        the store reads them; the current versions' chunks (`current`: article id -> content hash)
        go in with one commit per page. The article documents go in with the last commit, so an
        interrupted rebuild leaves its articles for catch_up, never marked as held. Holds the
        writer throughout: another process's write waits (up to its LOCK_WAIT_S). Returns the
        chunks indexed; `progress(done, total_read_so_far)` after each page."""
        indexed = 0
        with self._lock:
            writer = self._writer(self.LOCK_WAIT_S)
            try:
                writer.delete_all_documents()
                read = 0
                for ids, texts, metas in pages:
                    rows = [(i, t, m) for i, t, m in zip(ids, texts, metas)
                            if m and m.get("article_id") in current and current[m["article_id"]] == m.get("content_hash")]
                    self._add_chunks(writer, rows)
                    writer.commit()
                    read += len(ids)
                    indexed += len(rows)
                    if progress:
                        progress(read)
                Document = self._tantivy.Document
                for article_id, content_hash in current.items():
                    writer.add_document(Document(kind="article", article_id=article_id, content_hash=content_hash))
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()
        self.mark_synced(synced)
        self._searcher = None
        return indexed

    def _writer(self, lock_wait: float):
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                return self.index.writer(heap_size=self.WRITER_HEAP, num_threads=1)
            except ValueError as exc:
                if "LockBusy" not in str(exc) or time.monotonic() > deadline:
                    raise StoreError(f"lexical index {self.folder}: {exc}") from None
                time.sleep(0.05)

    def synced(self) -> str | None:
        try:
            return (self.folder / "synced").read_text().strip() or None
        except OSError:
            return None

    def mark_synced(self, stamp: str) -> None:
        partial = self.folder / f"synced.{os.getpid()}.tmp"
        partial.write_text(stamp)
        os.replace(partial, self.folder / "synced")
