"""A reading Store (`qa ask`'s) opens an embedded folder through Chroma's Rust bindings alone:
it must read exactly what chromadb's client reads, write through the client when asked to, and
leave chromadb's Python package unimported on a cold `qa ask`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qa.library import Library
from qa.store.chroma import Store
from qa.store.chroma_folder import FolderClient

from .conftest import SEED

QUESTION = "Who said GSOMIA scrapping was a misjudgment?"


@pytest.fixture
def stored(tmp_path, embedder):
    """A library folder holding the seed article and a second, shorter one."""
    articles = tmp_path / "in"
    articles.mkdir()
    (articles / "zaki.txt").write_text(
        "Zaki returns to Wigan\n\nEgypt striker Amir Zaki is back at his Premier League club Wigan Athletic after a row "
        "over his return from international duty. Manager Steve Bruce said the forward apologised.", encoding="utf-8")
    lib = Library(str(tmp_path / "data"), "news", embedder=embedder)
    lib.ingest([SEED, articles / "zaki.txt"])
    return lib


def test_a_reading_store_reads_what_the_client_reads(stored, embedder):
    full = stored.store
    reading = Store(full.location, full.name, embedder.name, embedder.dim, reading=True)
    assert isinstance(reading.client, FolderClient)
    vector = embedder.embed_query(QUESTION)
    vector = vector.tolist() if hasattr(vector, "tolist") else list(vector)
    ids = full.nearest_ids(vector, 8)
    assert reading.nearest_ids(vector, 8) == ids and len(ids) == 8
    assert reading.nearest_ids(vector, 3, {"article_id": ids[0].split(":")[0]}) == full.nearest_ids(vector, 3, {"article_id": ids[0].split(":")[0]})
    assert reading.chunk_records(ids) == full.chunk_records(ids)
    articles = [r.id for r in full.list_articles()]
    assert len(articles) == 2
    assert [r.__dict__ for r in reading.list_articles()] == [r.__dict__ for r in full.list_articles()]
    assert reading.get_articles(articles).keys() == full.get_articles(articles).keys()
    assert reading.current_hashes() == full.current_hashes()
    assert reading.copies_of(articles) == full.copies_of(articles) == []
    assert list(reading.chunk_pages(5)) == list(full.chunk_pages(5))
    assert reading.chunk_count() == full.chunk_count() > 5
    assert reading.stamp() == full.stamp() and reading.recorded_encoder() == full.recorded_encoder()
    assert reading.max_batch == full.max_batch


def test_a_write_through_a_reading_library_opens_the_client_and_is_read_back(stored, embedder, tmp_path):
    reading = Library(stored.store.location, "news", embedder=embedder, reading=True)
    assert isinstance(reading.store.client, FolderClient)
    before = stored.store.stamp()
    extra = tmp_path / "extra.txt"
    extra.write_text("Kyoto lanterns\n\nThe Kyoto lantern festival drew 40,000 visitors on Saturday, organisers said.",
                     encoding="utf-8")
    report = reading.ingest([extra])
    assert len(report.added) == 1 and not isinstance(reading.store.client, FolderClient)  # the client took over
    assert reading.store.stamp() != before
    assert len(reading.articles()) == 3 and len(stored.articles()) == 3  # seen by both, stored once
    assert "Kyoto" in reading.search("How many visitors did the lantern festival draw?", k=1)[0].text


def test_a_new_folder_is_created_by_the_client(tmp_path, embedder):
    reading = Store(str(tmp_path / "new"), "news", embedder.name, embedder.dim, reading=True)
    assert not isinstance(reading.client, FolderClient) and reading.chunk_count() == 0


ASK_WITHOUT_CHROMADB = """
import os, sys
import qa.cli
def finish():
    print("CHROMADB", "chromadb" in sys.modules, "TORCH", "torch" in sys.modules, flush=True)
    os._exit(0)
qa.cli._finish_read_only = finish
sys.argv = ["qa", "ask", sys.argv[1]]
qa.cli.main()
"""


def test_a_cold_ask_answers_without_importing_chromadb_or_torch(stored):
    env = {"QA_DATA_DIR": stored.store.location, "QA_COLLECTION": "news"}
    import os

    done = subprocess.run([sys.executable, "-c", ASK_WITHOUT_CHROMADB, QUESTION], capture_output=True, text=True,
                          timeout=300, env=os.environ | env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Motegi" in done.stdout and "CHROMADB False TORCH False" in done.stdout, done.stdout[-2000:]
