"""Reading an embedded Chroma folder through Chroma's own Rust bindings, without `import chromadb`.

chromadb's Python client is a layer of validation, telemetry and pydantic models over the
`chromadb_rust_bindings` extension that does the work in embedded mode; importing it costs ~0.45 s
of CPU (its models, OpenTelemetry, gRPC), about a fifth of a cold `qa ask`. A one-shot reader
opens the folder with the bindings alone (~0.06 s) and calls the same functions the client
would, with the same arguments (chromadb/api/rust.py). The first write, or anything else this
view does not cover, opens the full client for the rest of the Store's life (`open_folder`'s
`upgrade`).

Where the bindings are missing or their signatures are not the ones this was written for (a
chromadb release changed them), `open_folder` returns None and the full client is used."""

from __future__ import annotations

import json
from pathlib import Path

TENANT = "default_tenant"
DATABASE = "default_database"
# The bindings' signatures this view calls, as chromadb 1.x declares them: checked before use.
EXPECTED = {
    "get_collection": "($self, name, tenant, database)",
    "get": "($self, collection_id, ids=None, where=..., limit=None, offset=0, where_document=None, include=..., tenant=..., database=...)",
    "query": "($self, collection_id, ids, query_embeddings, n_results, where=..., where_document=None, include=..., tenant=..., database=...)",
    "count": "($self, collection_id, tenant=..., database=...)",
    "get_max_batch_size": "($self)",
}


def open_folder(path: str | Path, upgrade) -> "FolderClient | None":
    """A read view of the Chroma folder at `path`, or None where it cannot be had (no store there
    yet, no bindings, other signatures). `upgrade()` returns the full chromadb client; it is
    called once, at the first thing this view does not do."""
    folder = Path(path).resolve()
    if not (folder / "chroma.sqlite3").is_file():
        return None  # a new library: creating it is a write
    try:
        import chromadb_rust_bindings as rust
    except ImportError:
        return None
    if any(getattr(getattr(rust.Bindings, name, None), "__text_signature__", None) != signature
           for name, signature in EXPECTED.items()):
        return None
    # As chromadb's defaults: migrations applied, md5 hashes, an HNSW cache of a fifth of the
    # file handles (each index holds 5 files open).
    config = rust.SqliteDBConfig(hash_type=rust.MigrationHash.MD5, migration_mode=rust.MigrationMode.Apply,
                                 url=str(folder / "chroma.sqlite3"))
    try:
        import resource

        handles = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except ImportError:  # Windows
        handles = 512
    bindings = rust.Bindings(allow_reset=False, sqlite_db_config=config, persist_path=str(folder),
                             hnsw_cache_size=handles // 5)
    return FolderClient(bindings, upgrade)


class FolderClient:
    """The part of chromadb's client API a reading Store calls; the rest goes to the full client."""

    def __init__(self, bindings, upgrade) -> None:
        self._bindings = bindings
        self._upgrade = upgrade

    def get_collection(self, name: str, embedding_function=None) -> "FolderCollection":
        return FolderCollection(self._bindings.get_collection(name, TENANT, DATABASE), self)

    def get_or_create_collection(self, name: str, metadata=None, embedding_function=None):
        try:
            return self.get_collection(name)
        except Exception:  # noqa: BLE001 - missing (or unreadable): creating is the full client's job
            return self.full().get_or_create_collection(name, metadata=metadata, embedding_function=None)

    def get_max_batch_size(self) -> int:
        return self._bindings.get_max_batch_size()

    def full(self):
        """The full chromadb client (opened once, by the Store that owns this view)."""
        return self._upgrade()

    def __getattr__(self, name):
        return getattr(self.full(), name)


class FolderCollection:
    """A collection read through the bindings: `get`, `query`, `count`, `metadata` as chromadb's
    Collection returns them (plain lists); a write or any other call goes to the full client's
    collection of the same name."""

    def __init__(self, model, client: FolderClient) -> None:
        self.id = str(model.id)
        self.name = model.name
        self.metadata = model.metadata
        self._client = client
        self._bindings = client._bindings

    def count(self) -> int:
        return self._bindings.count(self.id, TENANT, DATABASE)

    def get(self, ids=None, where=None, limit=None, offset=None, include=("metadatas", "documents")) -> dict:
        got = self._bindings.get(self.id, list(ids) if ids is not None else None, json.dumps(where) if where else None,
                                 limit, offset or 0, None, list(include), TENANT, DATABASE)
        return {"ids": got.ids, "documents": got.documents, "metadatas": got.metadatas, "embeddings": got.embeddings}

    def query(self, query_embeddings, n_results: int = 10, where=None, include=("metadatas", "documents", "distances")) -> dict:
        got = self._bindings.query(self.id, None, [list(map(float, e)) for e in query_embeddings], n_results,
                                   json.dumps(where) if where else None, None, list(include), TENANT, DATABASE)
        return {"ids": got.ids, "documents": got.documents, "metadatas": got.metadatas, "distances": got.distances}

    def __getattr__(self, name):
        return getattr(self._client.full().get_collection(self.name, embedding_function=None), name)
