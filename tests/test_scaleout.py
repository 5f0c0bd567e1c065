"""Scaling out: two `qa serve` processes over one Chroma server answer from the same articles,
and an article ingested through one is found through the other (no stale BM25 index)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

from .conftest import SEED, free_port, server_process, wait_http

QA = str(Path(sys.executable).parent / "qa")

ARTICLE = """Harbor town opens floating library

PORT ELLISWORTH (AP) — The harbor town of Port Ellisworth opened a floating library on a converted
ferry on Saturday, the mayor, Dana Kowalczyk, said.

The ferry, renamed the Paper Tide, holds 12,000 books and docks at a different pier each week.
Kowalczyk said the library cost 2.4 million dollars, paid mostly by a fishing cooperative.
"""


@pytest.fixture
def two_servers(chroma_server, tmp_path):
    collection = f"shared{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "QA_CHROMA_URL": chroma_server, "QA_COLLECTION": collection}
    urls = []
    with server_process([QA, "serve", "--port", str(port_a := free_port())], tmp_path / "a.log", cwd=tmp_path, env=env) as a, \
         server_process([QA, "serve", "--port", str(port_b := free_port())], tmp_path / "b.log", cwd=tmp_path, env=env) as b:
        for port, proc in ((port_a, a), (port_b, b)):
            wait_http(f"http://127.0.0.1:{port}/", 180, proc)
            urls.append(f"http://127.0.0.1:{port}/")
        yield urls


def test_two_servers_share_one_chroma_server(two_servers, tmp_path):
    from gradio_client import Client, handle_file

    first, second = (Client(url, verbose=False) for url in two_servers)
    # Both answer from the seed, ingested through the first.
    assert "added: 2019-11-12-japan-us-gsomia" in first.predict([handle_file(str(SEED))], api_name="/ingest")
    for client in (first, second):
        assert "Motegi" in client.predict("Who said GSOMIA scrapping was a misjudgment?", api_name="/ask").splitlines()[0]
    # The second has built its BM25 index by now; a new article through the first must reach it.
    article = tmp_path / "2024-05-04-floating-library.txt"
    article.write_text(ARTICLE)
    report = first.predict([handle_file(str(article))], api_name="/ingest")
    assert "added: 2024-05-04-floating-library" in report, report
    answer = second.predict("Who is the mayor of Port Ellisworth?", api_name="/ask")
    assert "Kowalczyk" in answer.splitlines()[0], answer
    assert "[1] Harbor town opens floating library (2024-05-04)" in answer
