"""`qa watch`: article files landing in a folder are ingested as they arrive, by a real `qa watch`
process on a real Chroma server; this test process, sharing the host's lexical index, stands for a
serving process and finds them with its next search."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

QA = str(Path(sys.executable).parent / "qa")

FERRY = """Busan ferry line reopens after strike

BUSAN (AP) — The Busan ferry line to Fukuoka reopened on Thursday after a two-week strike by its
deckhands, the operator said. The company agreed to raise night-shift pay by 12 percent.
"""


def wait_for(condition, timeout: float = 120.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def watcher(chroma_server, tmp_path, embedder):
    from qa.config import Settings
    from qa.library import Library

    folder = tmp_path / "incoming"
    folder.mkdir()
    collection = f"watch{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "QA_CHROMA_URL": chroma_server, "QA_COLLECTION": collection, "QA_DATA_DIR": str(tmp_path / "data")}
    log = (tmp_path / "watch.log").open("w")
    proc = subprocess.Popen([QA, "watch", str(folder), "--interval", "0.2", "--settle", "1.0"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    lib = Library(chroma_server, collection, settings=Settings(data_dir=tmp_path / "data"), embedder=embedder)
    try:
        yield folder, lib, proc, tmp_path / "watch.log"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_files_landing_in_the_folder_are_ingested_and_found(watcher):
    folder, lib, proc, log = watcher
    # A file written in two parts, the second after a pause shorter than --settle: read whole.
    target = folder / "2024-03-07-busan-ferry.txt"
    with target.open("w") as out:
        out.write(FERRY[:120])
        out.flush()
        time.sleep(0.5)
        out.write(FERRY[120:])
    found = wait_for(lambda: [a for a in lib.articles() if a.id == "2024-03-07-busan-ferry"], what="the ferry article")
    assert found[0].chars == len(lib.article_text("2024-03-07-busan-ferry")) and "12 percent" in lib.article_text("2024-03-07-busan-ferry")
    assert [h.article_id for h in lib.search("deckhands strike Fukuoka", k=1, mode="keyword")] == ["2024-03-07-busan-ferry"]

    # A bad file is reported and skipped; temporary names are never read; the watcher goes on.
    (folder / "broken.jsonl").write_text('{"text": ')
    (folder / "draft.txt.part").write_text("not yet")
    (folder / "2024-03-08-harbour.txt").write_text("Harbour dredging ends\n\nThe harbour authority said dredging ends in May.")
    wait_for(lambda: any(a.id == "2024-03-08-harbour" for a in lib.articles()), what="the harbour article")
    wait_for(lambda: "rejected" in log.read_text() and "broken.jsonl" in log.read_text(), what="the rejection")
    assert proc.poll() is None
    assert {a.id for a in lib.articles()} == {"2024-03-07-busan-ferry", "2024-03-08-harbour"}

    # A changed file replaces its article; the old words are gone from the index.
    target.write_text(FERRY.replace("two-week strike by its\ndeckhands", "week-long walkout by its\nstewards"))
    wait_for(lambda: "stewards" in lib.article_text("2024-03-07-busan-ferry"), what="the replacement")
    hits = lib.search("stewards walkout", k=1, mode="keyword")
    assert [h.article_id for h in hits] == ["2024-03-07-busan-ferry"]
    assert all("deckhands" not in h.text for h in lib.search("deckhands", k=5, mode="keyword"))
    ids = [i for i in lib.store.all_chunk_ids()]
    assert len(ids) == len(set(ids)) and lib.check()["index_lagging_articles"] == []
