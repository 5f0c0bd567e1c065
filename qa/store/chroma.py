"""Chroma storage: chunks with their vectors, and a registry of articles that is the commit point.

Two Chroma collections per library collection NAME:
- NAME: one record per chunk (text, vector, article id, content hash, offsets, title, date).
- NAME__articles: one record per article (content hash, title, date, chunk count). An article's
  chunks are visible only when their content hash equals the registry's. Replacing an article
  writes the new chunks, then flips the registry record (one atomic Chroma write), then deletes
  the old chunks: a reader sees the old version or the new one, never a mix, and a crash at any
  point leaves only invisible orphans that the next ingest or `qa check` removes.
The chunk collection's metadata carries the embedder name/dim and a random `stamp` renewed by
every write, so caches derived from it (the BM25 index) know when to rebuild, across processes.
"""

from __future__ import annotations

import base64
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from qa.errors import EmbedderMismatch, StoreError

STAMP_KEY = "qa:stamp"
EMBEDDER_KEY = "qa:embedder"
DIM_KEY = "qa:dim"
ENCODER_KEY = "qa:encoder"  # which of the model's encoders wrote the vectors (qa/models/encoders.py)
REGISTRY_SUFFIX = "__articles"
# Per chunk, its sentences: offsets relative to the chunk ("0:118 119:301") and one vector per
# sentence, int8 with a float32 scale, base64 (520 characters for MiniLM) under its own key: Chroma
# indexes every metadata string in SQLite, and a string that fits an index cell (< ~1 KB) costs no
# overflow page (one key for all of a chunk's vectors took 1.5x the disk). Search ranks single
# sentences with them; they live in Chroma with their chunk, so every process sharing the store
# sees them and a replaced chunk takes its vectors along. On SQuAD, int8 ranks as float32 does.
SENTENCES_KEY = "sentences"
SENTENCE_VECTOR_KEY = "sentence_vector_{}"


def encoder_of(chunks) -> str | None:
    """The encoder that wrote a chunk collection's vectors; "torch-fp32" for one written before
    encoders were recorded (torch fp32 or bf16, which agree); None when it is empty."""
    recorded = (chunks.metadata or {}).get(ENCODER_KEY)
    if recorded:
        return str(recorded)
    return "torch-fp32" if chunks.count() else None


def pack_sentences(chunk_start: int, spans, vectors) -> dict:
    """Chunk metadata for its sentences: `spans` in article offsets, one vector per span."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    scales = np.maximum(np.abs(vectors).max(axis=1), 1e-12).astype(np.float32) / 127
    quantised = np.round(vectors / scales[:, None]).astype(np.int8)
    meta = {SENTENCES_KEY: " ".join(f"{s - chunk_start}:{e - chunk_start}" for s, e in spans)}
    for n, (scale, row) in enumerate(zip(scales, quantised)):
        meta[SENTENCE_VECTOR_KEY.format(n)] = base64.b64encode(scale.tobytes() + row.tobytes()).decode("ascii")
    return meta


def sentence_offsets(meta: dict) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in part.split(":")) for part in meta.get(SENTENCES_KEY, "").split()]


def sentence_rows(meta: dict, remove: bool = False):
    """A chunk's sentence vectors as packed int8 rows (n x (4 + dim): the float32 scale's bytes,
    then the vector), or None when it has none. `remove` takes the vector keys out of `meta`: the
    retrieval cache keeps the rows (400 bytes a sentence) instead of the strings."""
    import numpy as np

    relative = meta.get(SENTENCES_KEY)
    keys = [SENTENCE_VECTOR_KEY.format(n) for n in range(relative.count(" ") + 1)] if relative else []
    rows = None
    try:
        if keys:
            raw = b"".join(base64.b64decode(meta[key], validate=True) for key in keys)
            rows = np.frombuffer(raw, dtype=np.int8).reshape(len(keys), -1)
            rows = rows if rows.shape[1] > 4 else None
    except (KeyError, ValueError, TypeError):
        rows = None
    if remove:
        for key in [k for k in meta if k.startswith(SENTENCE_VECTOR_KEY.format(""))]:
            del meta[key]
    return rows


def rows_to_vectors(rows):
    """float32 vectors from packed int8 rows (any number of chunks' rows stacked)."""
    import numpy as np

    return rows[:, 4:] * np.ascontiguousarray(rows[:, :4]).view(np.float32)


@dataclass
class ArticleRecord:
    id: str
    content_hash: str
    text_hash: str
    title: str
    source: str
    published: str | None
    chunks: int
    chars: int
    url: str | None = None
    author: str | None = None
    dateline: str | None = None
    outlet: str | None = None  # the site that published it (web articles)
    story: str | None = None  # a wire copy: the id of the story it is a copy of (it has no chunks)
    wire: dict | None = None  # its near-duplicate signature and bands (qa/ingest/wire.py), written only

    def to_metadata(self) -> dict:
        # None values too: Chroma's upsert merges metadata and deletes a key set to None, so a field
        # an older version had and this one lacks (or a copy's `story`) does not linger.
        meta = {k: v for k, v in self.__dict__.items() if k not in ("id", "wire")}
        return meta | (self.wire or {})

    @classmethod
    def from_record(cls, id: str, meta: dict) -> "ArticleRecord":
        fields = cls.__dataclass_fields__
        return cls(id=id, **{k: meta.get(k) for k in fields if k not in ("id", "wire")})


def is_server(location: str | Path) -> bool:
    return str(location).startswith(("http://", "https://"))


def make_client(location: str | Path):
    """An embedded Chroma (a folder path) or a Chroma server (http://host:port), telemetry off."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    text = str(location)
    try:
        if is_server(text):
            url = urlparse(text)
            client = chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            client.heartbeat()
            return client
        Path(text).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=text, settings=chroma_settings)
    except StoreError:
        raise
    except Exception as exc:  # chromadb raises many kinds; the user needs one line
        raise StoreError(f"cannot open Chroma at {text}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@contextmanager
def store_errors(location: str):
    """Turn whatever Chroma or its HTTP client raises (server down, timeout, disk) into one line."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        module = type(exc).__module__
        if isinstance(exc, OSError) or module.startswith(("chromadb", "httpx", "httpcore", "sqlite3")):
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, ConnectionError) or (location.startswith("http") and module.startswith(("httpx", "httpcore"))):
                raise StoreError(f"Chroma server at {location} is unreachable ({first})") from None
            raise StoreError(f"Chroma at {location}: {first}") from None
        raise


class Store:
    """`reading=True` (a one-shot reader such as `qa ask`): an embedded folder is opened through
    Chroma's Rust bindings alone (qa/store/chroma_folder.py, ~0.45 s sooner); the first write or
    other call that view lacks opens chromadb's full client for the rest of the Store's life."""

    def __init__(self, location: str | Path, collection: str, embedder_name: str, dim: int, reading: bool = False):
        self.location = str(location)
        self.name = collection
        self.embedder_name = embedder_name
        self._dim = dim
        self._full = False  # chromadb's client opened (see _open_full)
        view = None
        if reading and not is_server(location):
            from qa.store.chroma_folder import open_folder

            with store_errors(self.location):
                view = open_folder(location, self._open_full)
        if view is not None:
            self.client = view
            self._open_collections()
        else:
            self._open_full()
        meta = self.chunks.metadata or {}
        if meta.get(EMBEDDER_KEY) != embedder_name or int(meta.get(DIM_KEY, dim)) != dim:
            raise EmbedderMismatch(
                f"collection '{collection}' was built with {meta.get(EMBEDDER_KEY)} ({meta.get(DIM_KEY)}-d), "
                f"not {embedder_name} ({dim}-d): use another --collection or the same embedder"
            )
        self.max_batch = max(1, min(5000, self.client.get_max_batch_size()))

    def _open_full(self):
        """Open chromadb's client and this Store's collections through it (once); returns it."""
        if not self._full:
            self.client = make_client(self.location)
            self._full = True
            self._open_collections()
        return self.client

    def _open_collections(self) -> None:
        try:
            self.chunks = self.client.get_or_create_collection(
                self.name,
                metadata={EMBEDDER_KEY: self.embedder_name, DIM_KEY: self._dim, "hnsw:space": "cosine"},
                embedding_function=None,
            )
            self.registry = self.client.get_or_create_collection(self.name + REGISTRY_SUFFIX, embedding_function=None)
        except Exception as exc:  # chromadb's own error types vary by version and mode
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(f"collection '{self.name}': {reason}") from None

    # --- stamp -------------------------------------------------------------------------------
    def stamp(self) -> str:
        """What derived caches key on: the random stamp every write renews (before and after it).
        Read on every search, so it must stay cheap: a count() costs ~11 ms at 100k chunks."""
        collection = self.client.get_collection(self.name, embedding_function=None)
        return str((collection.metadata or {}).get(STAMP_KEY, ""))

    def bump_stamp(self) -> str:
        stamp = uuid.uuid4().hex
        self._update_metadata({STAMP_KEY: stamp})
        return stamp

    def _update_metadata(self, changes: dict) -> None:
        # Read fresh: another process may have changed it since this Store opened the collection.
        current = self.client.get_collection(self.name, embedding_function=None).metadata or {}
        meta = {k: v for k, v in current.items() if not k.startswith("hnsw:")} | changes
        self.chunks.modify(metadata=meta)

    # --- encoder ------------------------------------------------------------------------------
    def recorded_encoder(self) -> str | None:
        return encoder_of(self.client.get_collection(self.name, embedding_function=None))

    def record_encoder(self, encoder: str) -> None:
        self._update_metadata({ENCODER_KEY: encoder})

    # --- articles ----------------------------------------------------------------------------
    def get_article(self, article_id: str) -> ArticleRecord | None:
        got = self.registry.get(ids=[article_id], include=["metadatas"])
        if not got["ids"]:
            return None
        return ArticleRecord.from_record(got["ids"][0], got["metadatas"][0])

    def _registry(self, page: int = 10000) -> list[tuple[str, dict]]:
        """Every registry record, read a page at a time: one unbounded read of tens of thousands
        of records fails inside Chroma's SQLite ("too many SQL variables", 50k articles)."""
        rows: list[tuple[str, dict]] = []
        while True:
            got = self.registry.get(include=["metadatas"], limit=page, offset=len(rows))
            rows += zip(got["ids"], got["metadatas"])
            if len(got["ids"]) < page:
                return rows

    def list_articles(self) -> list[ArticleRecord]:
        records = [ArticleRecord.from_record(i, m) for i, m in self._registry()]
        return sorted(records, key=lambda r: (r.published or "", r.id))

    def articles_matching(self, article_ids: list[str], text_hashes: list[str]) -> list[ArticleRecord]:
        """The stored articles with one of these ids or one of these texts (indexed reads, in
        batches: what an ingest compares against, without reading the whole registry — at 50k
        articles that read took 1.9 s of every 2.1 s one-article ingest)."""
        by_text = self._registry_in(text_hashes, lambda part: self.registry.get(
            where={"text_hash": {"$in": part}}, include=["metadatas"]))
        return list({r: ArticleRecord.from_record(r, m) for r, m in self._registry_of(article_ids) + by_text}.values())

    def get_articles(self, article_ids: list[str]) -> dict[str, ArticleRecord]:
        """The stored records of these articles, by id (indexed reads)."""
        return {i: ArticleRecord.from_record(i, m) for i, m in self._registry_of(article_ids)}

    def current_hashes_of(self, article_ids: list[str]) -> dict[str, str]:
        """article id -> current content hash, for these articles only (indexed reads)."""
        return {i: m["content_hash"] for i, m in self._registry_of(article_ids)}

    def _registry_of(self, article_ids: list[str]) -> list[tuple[str, dict]]:
        """The registry records of these articles (those stored), read by id in batches."""
        return self._registry_in(article_ids, lambda part: self.registry.get(ids=part, include=["metadatas"]))

    @staticmethod
    def _registry_in(values: list[str], read) -> list[tuple[str, dict]]:
        """(id, metadata) of the registry records `read(values)` returns, read in batches (SQLite
        bounds the variables of one read), each value once (Chroma refuses a read that names an
        id twice)."""
        values = list(dict.fromkeys(values))
        rows: list[tuple[str, dict]] = []
        for i in range(0, len(values), 5000):
            got = read(values[i : i + 5000])
            rows += zip(got["ids"], got["metadatas"])
        return rows

    def current_hashes(self) -> dict[str, str]:
        """article id -> current content hash of every article with chunks (wire copies have none)."""
        return {i: m["content_hash"] for i, m in self._registry() if not m.get("story")}

    # --- wire copies (qa/ingest/wire.py) -----------------------------------------------------------
    def wire_candidates(self, where: dict) -> list[tuple[str, dict]]:
        """(id, metadata) of the stories (not copies) a band query finds."""
        got = self.registry.get(where=where, include=["metadatas"])
        return [(i, m) for i, m in zip(got["ids"], got["metadatas"]) if not m.get("story")]

    def copies_of(self, story_ids: list[str]) -> list[ArticleRecord]:
        """The wire copies of these stories."""
        rows = self._registry_in(story_ids, lambda part: self.registry.get(where={"story": {"$in": part}}, include=["metadatas"]))
        return sorted((ArticleRecord.from_record(i, m) for i, m in rows), key=lambda r: (r.published or "", r.id))

    def copy_text(self, copy_id: str) -> str | None:
        got = self.registry.get(ids=[copy_id], include=["documents"])
        return got["documents"][0] if got["ids"] else None

    def write_copies(self, copies: list[tuple[ArticleRecord, str]]) -> None:
        """Wire copies: a registry record each, with its text (kept so a copy can become the story
        when the story is deleted), and no chunks."""
        for i in range(0, len(copies), self.max_batch):
            batch = copies[i : i + self.max_batch]
            self.registry.upsert(ids=[r.id for r, _ in batch], embeddings=[[1.0]] * len(batch),
                                 metadatas=[r.to_metadata() for r, _ in batch], documents=[text for _, text in batch])
        self.delete_stale_chunks({r.id: r.content_hash for r, _ in copies})  # one that was a story before

    def repoint_copies(self, copy_ids: list[str], story_id: str) -> None:
        if copy_ids:
            self.registry.update(ids=copy_ids, metadatas=[{"story": story_id}] * len(copy_ids))

    # --- writes ------------------------------------------------------------------------------
    def write_articles(self, rows: list[tuple[ArticleRecord, list[tuple[str, str, dict]]]], vectors) -> None:
        """Add or replace articles: all their chunks first, then the registry records (the commit
        point), then the chunks of the versions they replace. rows: (record, [(id, text, meta)])."""
        ids = [cid for _, chunks in rows for cid, _, _ in chunks]
        documents = [text for _, chunks in rows for _, text, _ in chunks]
        metadatas = [meta for _, chunks in rows for _, _, meta in chunks]
        for i in range(0, len(ids), self.max_batch):
            sl = slice(i, i + self.max_batch)
            self.chunks.upsert(ids=ids[sl], embeddings=vectors[sl], documents=documents[sl], metadatas=metadatas[sl])
        records = [record for record, _ in rows]
        for i in range(0, len(records), self.max_batch):
            batch = records[i : i + self.max_batch]
            # The registry needs vectors; a constant 1-d one, never queried.
            self.registry.upsert(ids=[r.id for r in batch], embeddings=[[1.0]] * len(batch), metadatas=[r.to_metadata() for r in batch])
        self.delete_stale_chunks({r.id: r.content_hash for r in records})

    def delete_stale_chunks(self, current: dict[str, str]) -> int:
        """Delete chunks of these articles whose content hash is not the current one."""
        stale: list[str] = []
        article_ids = list(current)
        for i in range(0, len(article_ids), 1000):
            part = article_ids[i : i + 1000]
            where = {"$and": [{"article_id": {"$in": part}}, {"content_hash": {"$nin": [current[a] for a in part]}}]}
            stale += self.chunks.get(where=where, include=[])["ids"]
        for i in range(0, len(stale), self.max_batch):
            self.chunks.delete(ids=stale[i : i + self.max_batch])
        return len(stale)

    def delete_article(self, article_id: str) -> bool:
        if self.get_article(article_id) is None:
            return False
        self.registry.delete(ids=[article_id])  # the commit point: the article is gone
        self.chunks.delete(where={"article_id": article_id})
        return True

    def chunk_pages(self, page: int = 5000):
        """Every chunk record, a page at a time: (ids, texts, metadata) per page."""
        offset = 0
        while True:
            got = self.chunks.get(include=["documents", "metadatas"], limit=page, offset=offset)
            if got["ids"]:
                yield got["ids"], got["documents"], got["metadatas"]
            if len(got["ids"]) < page:
                return
            offset += page

    def all_chunks(self, page: int = 5000) -> tuple[list[str], list[str], list[dict]]:
        """Every chunk record (ids, texts, metadata), paged so huge collections stay in bounds."""
        ids: list[str] = []
        docs: list[str] = []
        metas: list[dict] = []
        for page_ids, page_docs, page_metas in self.chunk_pages(page):
            ids += page_ids
            docs += page_docs
            metas += page_metas
        return ids, docs, metas

    def chunk_count(self) -> int:
        return self.chunks.count()

    def all_chunk_ids(self, page: int = 10000) -> list[str]:
        """Every chunk id (no texts, no metadata: ~1 s for 100k chunks, metadata would take ~7 s)."""
        ids: list[str] = []
        while True:
            got = self.chunks.get(include=[], limit=page, offset=len(ids))
            ids += got["ids"]
            if len(got["ids"]) < page:
                return ids

    def chunk_records(self, ids: list[str]) -> tuple[list[str], list[dict]]:
        """Texts and metadata for these chunk ids, in the same order."""
        found: dict[str, tuple[str, dict]] = {}
        step = min(self.max_batch, 500)  # Chroma binds one SQL variable per id
        for i in range(0, len(ids), step):
            got = self.chunks.get(ids=ids[i : i + step], include=["documents", "metadatas"])
            found.update(zip(got["ids"], zip(got["documents"], got["metadatas"])))
        missing = ("", {})  # deleted between the listing and this read: never current
        records = [found.get(i, missing) for i in ids]
        return [t for t, _ in records], [m for _, m in records]

    def nearest_ids(self, embedding: list[float], n: int, where: dict | None = None) -> list[str]:
        """Ids of the nearest chunks, best first (no texts: callers that cache them skip the fetch)."""
        got = self.chunks.query(query_embeddings=[embedding], n_results=n, where=where or None, include=[])
        return got["ids"][0]
