"""What retrieval reads per query: the lexical index kept fresh against the store (reloaded when
the store's stamp moves, caught up per article, rebuilt in bulk when missing or far behind) and
the candidates' records read from Chroma, current versions only."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from qa.text.tokens import tokenize
from qa.errors import StoreError
from qa.store.filters import Filters
from qa.store.chroma import Store, sentence_rows


def is_current(meta: dict, current: dict[str, str]) -> bool:
    """A chunk belongs to the version of its article that the registry points at."""
    return current.get(meta.get("article_id")) == meta.get("content_hash")


class ChunkSource:
    """What retrieval reads per query, with no copy of the corpus in the process: the lexical
    index (qa/store/lexical.py: on disk, memory-mapped, updated per article by whoever writes) for BM25
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
        from qa.store.lexical import LexicalIndex

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

    def catch_up(self, stamp: str | None = None, lock_wait: float | None = None, *, wait: bool | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
        """Bring the index in line with the registry: articles whose indexed version differs are
        re-indexed from their stored chunks, articles gone are removed; far behind, the whole
        index is rebuilt in bulk (`rebuilt`: chunks indexed; None while it runs in the
        background; `wait` overrides the source's `background`; `progress(chunks read, chunks)`
        follows a bulk rebuild). Returns counts; with lock_wait given, gives up on a per-article catch-up
        (returns None counts) when another process holds the writer longer than that."""
        stamp = stamp or self.store.stamp()
        current = self.store.current_hashes()
        held = self.lexical.articles()
        stale = [a for a, h in current.items() if held.get(a) != h]
        gone = [a for a in held if a not in current]
        if len(stale) >= max(self.BULK_MIN, self.BULK_SHARE * len(current)):
            if self.background if wait is None else not wait:
                self._rebuilding = threading.Thread(target=self._rebuild_logged, args=(stamp, current), daemon=True,
                                                    name="lexical-rebuild")
                self._rebuilding.start()
                return {"reindexed": None, "removed": None, "rebuilt": None}
            return {"reindexed": len(stale), "removed": len(gone), "rebuilt": self.rebuild(stamp, current, progress)}
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

    def rebuild(self, stamp: str | None = None, current: dict[str, str] | None = None,
                progress: Callable[[int, int], None] | None = None) -> int:
        """The whole lexical index again from the store, in bulk; returns the chunks indexed."""
        stamp = stamp or self.store.stamp()
        current = self.store.current_hashes() if current is None else current
        total = self.store.chunk_count()
        report = (lambda done: progress(done, total)) if progress else None
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
