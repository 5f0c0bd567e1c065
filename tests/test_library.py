"""The Python API end to end, on an embedded Chroma and on a real Chroma server."""

from __future__ import annotations

import json
import uuid

import pytest

from qa.retrieve.ranking import rank_evidence
from qa.errors import EmbedderMismatch
from qa.store.chroma import Store

QUESTION = "Who said GSOMIA scrapping was a misjudgment?"
QUOTE = "complete misjudgment of the current regional security environment"


def chunk_ids(lib) -> set[str]:
    return set(lib.store.chunks.get(include=[])["ids"])


def test_seed_search_finds_the_quote_with_exact_offsets(make_library, seed_copy):
    lib = make_library()
    report = lib.ingest([seed_copy.parent])
    assert report.added == ["2019-11-12-japan-us-gsomia"] and not report.rejected
    hits = lib.search(QUESTION, k=3)
    quoted = [h for h in hits if QUOTE in h.text]
    assert quoted, [h.text[:60] for h in hits]
    hit = quoted[0]
    text = lib.article_text(hit.article_id)
    assert text[hit.start : hit.end] == hit.text
    assert hit.start <= text.index(QUOTE) < hit.end
    assert hit.title == "Japan, US say 3-way ties with S. Korea are key to security"
    assert hit.published == "2019-11-12"
    assert [a.id for a in lib.articles()] == ["2019-11-12-japan-us-gsomia"]


def test_passages_fit_the_budget_and_quote_the_article_exactly(make_library, seed_copy):
    lib = make_library()
    lib.ingest([seed_copy])
    text = lib.article_text("2019-11-12-japan-us-gsomia")
    for budget in (300, 1000, 2500):
        passages = lib.passages(QUESTION, chars=budget)
        assert passages and sum(len(p.text) for p in passages) <= budget
        assert all(text[p.start : p.end] == p.text for p in passages)
        assert QUOTE in passages[0].text  # the quote's sentence comes first even in 300 chars
        top = rank_evidence(QUESTION, lib.sentences(QUESTION))[0]  # passages come in the answer chain's order
        assert passages[0].start <= top.start and top.end <= passages[0].end
    # A passage is whole sentences of one chunk: it starts and ends where sentences do.
    sentences = lib.sentences(QUESTION)
    for p in lib.passages(QUESTION, chars=1000):
        assert p.start in {s.start for s in sentences} and p.end in {s.end for s in sentences}


def test_every_chunk_stores_its_sentence_vectors_and_their_mean(make_library, seed_copy):
    import numpy as np

    from qa.text.chunking import chunk_text
    from qa.store.chroma import rows_to_vectors, sentence_offsets, sentence_rows

    lib = make_library()
    lib.ingest([seed_copy])
    got = lib.store.chunks.get(include=["documents", "metadatas", "embeddings"])
    text = lib.article_text("2019-11-12-japan-us-gsomia")
    chunks = {c.start: c for c in chunk_text(text, lib.settings.chunk_size, lib.settings.chunk_overlap)}
    for doc, meta, vector in zip(got["documents"], got["metadatas"], got["embeddings"]):
        spans, vectors = sentence_offsets(meta), rows_to_vectors(sentence_rows(meta))
        chunk = chunks[meta["start"]]
        assert [(meta["start"] + s, meta["start"] + e) for s, e in spans] == list(chunk.sentences)
        assert vectors.shape == (len(spans), lib.embedder.dim)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-2)
        mean = vectors.mean(axis=0)
        assert np.allclose(vector, mean / np.linalg.norm(mean), atol=2e-2)  # int8 storage
        alone = np.asarray(lib.embedder.embed([doc[spans[0][0] : spans[0][1]]])[0])
        assert float(alone @ vectors[0]) > 0.999


def test_chunks_stored_without_sentence_vectors_are_still_ranked_by_sentence(make_library, seed_copy):
    """Stores written before sentence vectors existed: their sentences are encoded on demand."""
    from qa.store.chroma import SENTENCES_KEY

    lib = make_library()
    lib.ingest([seed_copy])
    ids = lib.store.chunks.get(include=[])["ids"]
    lib.store.chunks.update(ids=ids, metadatas=[{SENTENCES_KEY: ""}] * len(ids))
    lib.store.bump_stamp()
    fresh = make_library(lib.collection)
    passages = fresh.passages(QUESTION, chars=400)
    assert QUOTE in passages[0].text
    assert len(fresh.retriever._encoded) >= 1


def test_reingest_adds_nothing_and_an_edit_replaces_all_old_chunks(make_library, seed_copy):
    lib = make_library()
    lib.ingest([seed_copy])
    before = chunk_ids(lib)

    again = lib.ingest([seed_copy])
    assert again.unchanged == ["2019-11-12-japan-us-gsomia"] and again.chunks_added == 0
    assert chunk_ids(lib) == before

    seed_copy.write_text(seed_copy.read_text().replace("complete misjudgment", "grave misjudgment"))
    edited = lib.ingest([seed_copy])
    assert edited.replaced == ["2019-11-12-japan-us-gsomia"]
    after = chunk_ids(lib)
    assert after and not (after & before)
    (record,) = lib.articles()
    assert record.chunks == len(after)
    texts = lib.store.chunks.get(include=["documents"])["documents"]
    assert any("grave misjudgment" in t for t in texts)
    assert not any("complete misjudgment" in t for t in texts)
    assert "grave misjudgment" in lib.search(QUESTION, k=3)[0].text or any(
        "grave misjudgment" in h.text for h in lib.search(QUESTION, k=3)
    )


def test_rejected_file_changes_nothing(make_library, seed_copy, tmp_path):
    lib = make_library()
    lib.ingest([seed_copy])
    before = chunk_ids(lib)
    bad = seed_copy.parent / "broken.txt"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    report = lib.ingest([seed_copy.parent])
    assert report.rejected == [(str(bad), "binary file (PNG image), not text")]
    assert report.unchanged == ["2019-11-12-japan-us-gsomia"]
    assert chunk_ids(lib) == before


def test_same_text_under_another_name_is_rejected(make_library, seed_copy):
    lib = make_library()
    lib.ingest([seed_copy])
    twin = seed_copy.parent / "copy-of-story.txt"
    twin.write_text(seed_copy.read_text())
    report = lib.ingest([twin])
    assert report.rejected == [(str(twin), f"same text as stored article '2019-11-12-japan-us-gsomia' ({seed_copy})")]
    assert [a.id for a in lib.articles()] == ["2019-11-12-japan-us-gsomia"]


def test_two_files_with_one_article_id_in_one_ingest(make_library, tmp_path):
    """The first is stored; the second is a one-line error naming it (not a store error)."""
    lib = make_library()
    for folder, word in (("a", "alpha"), ("b", "beta")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "story.txt").write_text(f"{word.title()} story\n\nThe {word} council met on Friday to vote on the budget.")
    report = lib.ingest([tmp_path / "a" / "story.txt", tmp_path / "b" / "story.txt"])
    assert report.added == ["story"]
    assert report.rejected == [(str(tmp_path / "b" / "story.txt"), f"same article id 'story' as {tmp_path / 'a' / 'story.txt'}")]
    assert [r.id for r in lib.articles()] == ["story"]


def test_a_sentence_repeated_across_articles_fills_one_place_in_the_results(make_library, tmp_path):
    """Wire copy: six outlets carry the same sentence. It counts once, so the one article that
    says something else about the question is the next result instead of the seventh."""
    lib = make_library()
    repeated = "Officials said the new harbour ferry service would start carrying passengers soon."
    for outlet in ("Tribune", "Herald", "Gazette", "Courier", "Observer", "Chronicle"):
        (tmp_path / f"ferry-{outlet.lower()}.txt").write_text(
            f"Ferry news from the {outlet}\n\nPORT ELLISWORTH — {repeated} The report was carried by the {outlet}.")
    (tmp_path / "ferry-timetable.txt").write_text(
        "Ferry timetable published\n\nThe harbour ferry begins passenger trips on March 3, the transport office announced.")
    lib.ingest([tmp_path])
    hits = lib.search("When will the harbour ferry service start carrying passengers?", k=3)
    assert [repeated in h.text for h in hits].count(True) == 2 and repeated in hits[0].text  # the best copy still leads
    assert hits[1].article_id == "ferry-timetable"
    copies = lib.search("When will the harbour ferry service start carrying passengers?", k=7)[2:]
    assert all(repeated in h.text and "sentence" not in h.ranks for h in copies)  # ranked once, by its best copy
    quoted = " ".join(p.text for p in lib.passages("When will the harbour ferry service start carrying passengers?", chars=1000))
    assert quoted.count(repeated) == 1 and "March 3" in quoted  # the evidence quotes it once, beside the other story


def test_an_ingest_reads_only_the_registry_records_it_touches(make_library, tmp_path):
    """Same id or same text, nothing else: a write costs the same in a growing archive."""
    lib = make_library()
    for name in ("alpha", "beta", "gamma"):
        (tmp_path / f"{name}.txt").write_text(f"{name.title()} story\n\nThe {name} council met on Friday to vote on the budget.")
    lib.ingest([tmp_path])
    stored = {r.id: r for r in lib.articles()}
    touched = lib.store.articles_matching(["beta", "no-such-article"], [stored["gamma"].text_hash, "0" * 16])
    assert sorted(r.id for r in touched) == ["beta", "gamma"]
    assert lib.store.articles_matching([], []) == []


def test_filters_and_delete(make_library, seed_copy, tmp_path):
    lib = make_library()
    other = seed_copy.parent / "2021-03-02-harbour.txt"
    other.write_text("The harbour authority said the misjudgment on dredging cost two million dollars.")
    lib.ingest([seed_copy.parent])
    assert {h.article_id for h in lib.search("misjudgment", k=5)} == {"2019-11-12-japan-us-gsomia", "2021-03-02-harbour"}
    assert {h.article_id for h in lib.search("misjudgment", k=5, filters={"date_from": "2020-01-01"})} == {"2021-03-02-harbour"}
    assert {h.article_id for h in lib.search("misjudgment", k=5, filters={"date_to": "2019-12-31"})} == {"2019-11-12-japan-us-gsomia"}
    assert {h.article_id for h in lib.search("misjudgment", k=5, filters={"source": str(other)})} == {"2021-03-02-harbour"}
    with pytest.raises(ValueError, match="date_from"):
        lib.search("misjudgment", filters={"date_from": "last week"})

    assert lib.delete("2021-03-02-harbour") is True
    assert lib.delete("2021-03-02-harbour") is False
    assert [a.id for a in lib.articles()] == ["2019-11-12-japan-us-gsomia"]
    assert {h.article_id for h in lib.search("dredging harbour authority", k=5)} == {"2019-11-12-japan-us-gsomia"}


def test_bm25_follows_writes_from_another_process_view(make_library, seed_copy, tmp_path):
    """Two Library objects on one collection (as two processes would be): what one ingests,
    the other finds by keyword at once, and a delete through one hides it from the other."""
    writer, reader = make_library(), make_library()
    writer.ingest([seed_copy])
    assert reader.search("Motegi misjudgment", k=1)  # reader builds its BM25 cache now
    note = tmp_path / "zanzibar.txt"
    note.write_text("Zanzibar ferry operators announced a strike over fuel prices on Monday.")
    writer.ingest([note])
    top = reader.search("Zanzibar ferry strike", k=1)[0]
    assert top.article_id == "zanzibar" and top.ranks.get("bm25") == 1
    writer.delete("zanzibar")
    assert all(h.article_id != "zanzibar" for h in reader.search("Zanzibar ferry strike", k=5))


def test_orphan_chunks_of_an_interrupted_replace_stay_invisible(make_library, seed_copy, embedder):
    """Chunks written before a crash, whose registry flip never happened, are never returned,
    and the next ingest of the article sweeps them away."""
    lib = make_library()
    lib.ingest([seed_copy])
    vector = embedder.embed_query("orphan text about GSOMIA misjudgment")
    lib.store.chunks.upsert(
        ids=["2019-11-12-japan-us-gsomia:deadbeef:0"], embeddings=[vector], documents=["orphan text about GSOMIA misjudgment"],
        metadatas=[{"article_id": "2019-11-12-japan-us-gsomia", "content_hash": "deadbeef", "start": 0, "end": 10, "title": "x", "source": "x"}],
    )
    lib.store.bump_stamp()
    assert all("orphan" not in h.text for h in lib.search("orphan text about GSOMIA misjudgment", k=10))
    lib.ingest([seed_copy])
    assert "2019-11-12-japan-us-gsomia:deadbeef:0" not in chunk_ids(lib)


def test_collection_refuses_another_embedder(make_library, store_location):
    lib = make_library()
    with pytest.raises(EmbedderMismatch, match=f"collection '{lib.collection}' was built with minilm:all-MiniLM-L6-v2"):
        Store(store_location, lib.collection, "openai:text-embedding-3-small", 1536)


def test_llamaindex_retriever_view(make_library, seed_copy):
    lib = make_library()
    lib.ingest([seed_copy])
    nodes = lib.retriever.as_llamaindex(k=3).retrieve(QUESTION)
    assert any(QUOTE in n.node.get_content() for n in nodes)
    assert all(n.node.start_char_idx is not None for n in nodes)


def test_check_reports_and_repairs_drift(make_library, seed_copy, embedder, tmp_path):
    """An orphan chunk (no registry flip) and an article that lost a chunk are reported, then
    repaired; searches afterwards see a clean store."""
    lib = make_library()
    other = tmp_path / "articles" / "2021-03-02-harbour.txt"
    other.write_text("The harbour authority said dredging cost two million dollars. Work ends in May.")
    lib.ingest([seed_copy.parent])
    assert lib.check() == {"articles": 2, "chunks": 14, "orphan_chunks": 0, "incomplete_articles": [], "index_lagging_articles": [],
                           "repaired": False}

    vector = embedder.embed_query("orphan")
    lib.store.chunks.upsert(ids=["2019-11-12-japan-us-gsomia:old:0"], embeddings=[vector], documents=["orphan"],
                            metadatas=[{"article_id": "2019-11-12-japan-us-gsomia", "content_hash": "old", "start": 0, "end": 6}])
    seed_chunk = lib.store.chunks.get(where={"article_id": "2019-11-12-japan-us-gsomia"}, include=[])["ids"]
    lib.store.chunks.delete(ids=[i for i in seed_chunk if not i.endswith(":old:0")][:1])
    report = lib.check()
    assert report["orphan_chunks"] == 1 and report["incomplete_articles"] == ["2019-11-12-japan-us-gsomia"]

    assert lib.check(repair=True)["repaired"] is True
    assert [a.id for a in lib.articles()] == ["2021-03-02-harbour"]
    assert lib.check() == {"articles": 1, "chunks": 1, "orphan_chunks": 0, "incomplete_articles": [], "index_lagging_articles": [],
                           "repaired": False}
    assert {h.article_id for h in lib.search("GSOMIA misjudgment", k=5, mode="keyword")} <= {"2021-03-02-harbour"}
    assert lib.ingest([seed_copy]).added == ["2019-11-12-japan-us-gsomia"]


def test_overlapping_chunks_give_each_sentence_once(store_location, embedder, seed_copy):
    from qa.config import Settings
    from qa.library import Library

    lib = Library(store_location, f"overlap{uuid.uuid4().hex[:8]}", settings=Settings(chunk_size=320, chunk_overlap=160), embedder=embedder)
    lib.ingest([seed_copy])
    ranked = lib.sentences(QUESTION)
    assert len({(s.start, s.end) for s in ranked}) == len(ranked)
    text = lib.article_text("2019-11-12-japan-us-gsomia")
    passages = lib.passages(QUESTION, chars=2500)
    covered = [i for p in passages for i in range(p.start, p.end)]
    assert len(covered) == len(set(covered))  # no character handed over twice
    assert all(text[p.start : p.end] == p.text for p in passages)


def no_whole_corpus(*_args, **_kwargs):
    raise AssertionError("read the whole collection")


def test_a_restarted_process_reads_the_index_on_disk_and_no_whole_corpus(store_location, embedder, seed_copy, tmp_path, monkeypatch):
    """The lexical index lives on disk: a new process ranks exactly as the one that wrote it,
    without listing or reading every chunk of the store (no rebuild, no corpus copy)."""
    from qa.config import Settings
    from qa.library import Library

    settings = Settings(data_dir=tmp_path / "index-home")
    collection = f"restart{uuid.uuid4().hex[:8]}"
    first = Library(store_location, collection, settings=settings, embedder=embedder)
    first.ingest([seed_copy])
    before = [(p.start, p.end, round(p.score, 6)) for p in first.passages(QUESTION, chars=800)]

    second = Library(store_location, collection, settings=settings, embedder=embedder)
    monkeypatch.setattr(second.store, "all_chunk_ids", no_whole_corpus)
    monkeypatch.setattr(second.store, "all_chunks", no_whole_corpus)
    assert [(p.start, p.end, round(p.score, 6)) for p in second.passages(QUESTION, chars=800)] == before


def test_a_write_by_another_process_is_searchable_at_once_without_a_rebuild(store_location, embedder, seed_copy, tmp_path, monkeypatch):
    """Two Library objects on one store and data dir stand for two processes of one host: what
    one ingests, replaces or deletes, the other's next search sees; the reader never reads the
    whole collection to get there."""
    from qa.config import Settings
    from qa.library import Library

    settings = Settings(data_dir=tmp_path / "shared-home")
    collection = f"fresh{uuid.uuid4().hex[:8]}"
    writer = Library(store_location, collection, settings=settings, embedder=embedder)
    writer.ingest([seed_copy])
    reader = Library(store_location, collection, settings=settings, embedder=embedder)
    assert reader.search("GSOMIA", k=1, mode="keyword")
    for name in ("all_chunk_ids", "all_chunks", "current_hashes"):
        monkeypatch.setattr(reader.store, name, no_whole_corpus)

    ferry = tmp_path / "ferry.jsonl"
    ferry.write_text(json.dumps({"id": "ferry", "text": "The Busan ferry line reopened on Thursday after a two-week strike by its crews."}) + "\n")
    writer.ingest([ferry])
    assert [h.article_id for h in reader.search("ferry strike", k=1, mode="keyword")] == ["ferry"]
    ferry.write_text(json.dumps({"id": "ferry", "text": "The Busan ferry line stays shut: the walkout by deckhands goes on."}) + "\n")
    writer.ingest([ferry])
    found = reader.search("ferry deckhands walkout strike crews", k=5, mode="keyword")
    assert [h.article_id for h in found][:1] == ["ferry"] and all("strike" not in h.text for h in found if h.article_id == "ferry")
    writer.delete("ferry")
    assert all(h.article_id != "ferry" for h in reader.search("ferry deckhands walkout", k=5))


def test_a_library_is_its_folder_from_any_working_directory(tmp_path, embedder, seed_copy, monkeypatch):
    """The folder a library is opened with holds all of its data: opened from another working
    directory, it finds its lexical index (no rebuild, no whole-corpus read), and nothing is
    written into either working directory."""
    from qa.config import Settings
    from qa.library import Library

    folder = tmp_path / "news"
    first_cwd, second_cwd = tmp_path / "one", tmp_path / "two"
    first_cwd.mkdir()
    second_cwd.mkdir()
    monkeypatch.chdir(first_cwd)
    writer = Library(folder, "news", settings=Settings(), embedder=embedder)
    assert writer.ingest([seed_copy]).ok
    before = [(p.start, p.end, round(p.score, 6)) for p in writer.passages(QUESTION, chars=800)]
    assert (folder / "lexical" / "news").is_dir()

    monkeypatch.chdir(second_cwd)
    reader = Library(folder, "news", settings=Settings(), embedder=embedder)
    for name in ("all_chunk_ids", "all_chunks", "current_hashes"):
        monkeypatch.setattr(reader.store, name, no_whole_corpus)
    assert [(p.start, p.end, round(p.score, 6)) for p in reader.passages(QUESTION, chars=800)] == before
    assert list(first_cwd.iterdir()) == [] and list(second_cwd.iterdir()) == []


def test_an_index_in_the_old_place_is_moved_into_the_folder(tmp_path, embedder, seed_copy, monkeypatch):
    """Earlier versions kept the index under the working directory's data dir, keyed by the
    location: a library opened there again moves it into its folder instead of rebuilding it."""
    import hashlib

    from qa.config import Settings
    from qa.library import Library

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "news"
    Library(folder, "news", settings=Settings(), embedder=embedder).ingest([seed_copy])
    old = tmp_path / ".qa-data" / "lexical" / f"news-{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}"
    old.parent.mkdir(parents=True)
    (folder / "lexical" / "news").rename(old)

    reopened = Library(folder, "news", settings=Settings(), embedder=embedder)
    monkeypatch.setattr(reopened.store, "current_hashes", no_whole_corpus)
    assert reopened.search("GSOMIA", k=1, mode="keyword")
    assert (folder / "lexical" / "news").is_dir() and not old.exists()


def test_the_registry_is_read_in_pages(make_library, tmp_path, monkeypatch):
    """One unbounded read of a large registry fails inside Chroma's SQLite ("too many SQL
    variables" at 50k articles): every whole-registry read goes page by page, and misses none."""
    from qa.store import chroma as store_module

    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(7):
        (folder / f"2020-01-0{n + 1}-story-{n}.txt").write_text(f"Story {n}\n\nThe town of Place{n} held its fair number {n}.\n")
    lib = make_library()
    assert lib.ingest([folder]).ok
    reads = []
    real_get = lib.store.registry.get
    monkeypatch.setattr(lib.store.registry, "get", lambda **kw: reads.append(kw.get("limit")) or real_get(**kw))
    pages = store_module.Store._registry
    monkeypatch.setattr(store_module.Store, "_registry", lambda self, page=3: pages(self, page))
    assert len(lib.store.list_articles()) == 7 and len(lib.store.current_hashes()) == 7
    assert reads and all(limit == 3 for limit in reads)  # 3 + 3 + 1, twice: never all at once
    assert len(lib.store.current_hashes_of([a.id for a in lib.store.list_articles()])) == 7


def many_articles(tmp_path, n: int = 7):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(n):
        (folder / f"2020-01-0{i + 1}-story-{i}.txt").write_text(
            f"Story {i}\n\nThe town of Place{i} held its harvest fair number {i}. The mayor of Place{i} opened it.\n")
    return folder


def test_a_deleted_index_is_rebuilt_in_bulk_with_progress(make_library, tmp_path, monkeypatch):
    """A missing lexical index is rebuilt from the store page by page (one commit per page), not
    article by article, and ranks exactly as before."""
    import shutil

    from qa.retrieve.chunks import ChunkSource

    lib = make_library()
    assert lib.ingest([many_articles(tmp_path)]).ok
    before = [(h.chunk_id, round(h.score, 6)) for h in lib.search("Place3 harvest fair mayor", k=5, mode="keyword")]
    shutil.rmtree(lib.lexical.folder)

    monkeypatch.setattr(ChunkSource, "BULK_MIN", 3)
    monkeypatch.setattr(ChunkSource, "PAGE", 4)  # several pages
    reopened = make_library(lib.collection)
    per_article = []
    monkeypatch.setattr(reopened.lexical, "apply", lambda *a, **k: per_article.append(a))
    seen = []
    result = reopened.check(repair=True, progress=lambda done, total: seen.append((done, total)))
    chunks = result["chunks"]
    assert result["repaired"] and len(result["index_lagging_articles"]) == 7 and not per_article
    assert seen[-1] == (chunks, chunks) and len(seen) == -(-chunks // 4)
    assert [(h.chunk_id, round(h.score, 6)) for h in reopened.search("Place3 harvest fair mayor", k=5, mode="keyword")] == before
    assert reopened.check()["index_lagging_articles"] == []


def test_a_server_answers_by_vectors_while_its_index_rebuilds(make_library, tmp_path, monkeypatch):
    """With background_index (as `qa serve` opens libraries), a missing index is rebuilt in a
    thread; searches meanwhile go by vectors and the answer says the keyword leg was not ready.
    Another writer holding the index stands for a long rebuild."""
    import shutil

    from qa.library import Library
    from qa.store.lexical import LexicalIndex
    from qa.retrieve.chunks import ChunkSource

    lib = make_library()
    assert lib.ingest([many_articles(tmp_path)]).ok
    folder = lib.lexical.folder
    shutil.rmtree(folder)
    monkeypatch.setattr(ChunkSource, "BULK_MIN", 3)
    blocker = LexicalIndex(folder)
    held = blocker._writer(0.0)
    server = Library(lib.store.location, lib.collection, settings=lib.settings, embedder=lib.embedder, background_index=True)
    try:
        hits = server.search("Who opened the harvest fair of Place3?", k=3)
        assert hits and hits[0].article_id.endswith("story-3")
        assert server.search("Place3 harvest", k=3, mode="keyword") == []
        assert not server.retriever.chunks.keyword_ready
        answer = server.ask("Who opened the harvest fair of Place3?")
        assert answer.signals["keyword_index_ready"] == 0.0 and answer.citations
    finally:
        held.rollback()
        held.wait_merging_threads()
        del held
    server.retriever.chunks._rebuilding.join(90)
    assert server.retriever.chunks.keyword_ready and server.retriever.chunks.rebuild_error is None
    assert server.search("Place3 harvest", k=1, mode="keyword")[0].article_id.endswith("story-3")


def test_ingesting_a_folder_that_holds_the_library_skips_the_library_itself(tmp_path, embedder):
    """`qa ingest .` where the data folder sits inside: the library's own files (its lexical
    index has .json files) are never read as articles."""
    from qa.config import Settings
    from qa.library import Library

    (tmp_path / "2020-01-01-fair.txt").write_text("Fair opens\n\nThe town fair opened on Monday with a parade.\n")
    lib = Library(tmp_path / "data", "news", settings=Settings(), embedder=embedder)
    first = lib.ingest([tmp_path])
    assert first.ok and first.added == ["2020-01-01-fair"]
    assert list((tmp_path / "data").rglob("*.json"))  # there is something that could have been misread
    again = lib.ingest([tmp_path])
    assert again.ok and again.unchanged == ["2020-01-01-fair"] and not again.added
