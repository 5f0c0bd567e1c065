"""Real components only: an embedded Chroma in a temp dir, and a real `chroma run` server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "seeds" / "2019-11-12-japan-us-gsomia.txt"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real Chroma server on a free 127.0.0.1 port, persisted in a temp dir."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert chroma, "the chroma CLI (from the chromadb package) is not installed"
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def embedder():
    from qa.config import Settings
    from qa.embeddings import get_embedder

    return get_embedder(Settings())


@pytest.fixture(params=["embedded", "server"])
def store_location(request, tmp_path):
    """Each test that takes it runs twice: on an embedded store and on the Chroma server."""
    if request.param == "server":
        return request.getfixturevalue("chroma_server")
    return str(tmp_path / "data")


@pytest.fixture
def make_library(store_location, embedder):
    """Libraries on the parametrised store, each in a fresh collection."""
    from qa.library import Library

    collection = f"t{uuid.uuid4().hex[:12]}"

    def make(name: str | None = None):
        return Library(store_location, name or collection, embedder=embedder)

    return make


@pytest.fixture
def seed_copy(tmp_path):
    """The seed article copied into a temp folder, so tests may edit it."""
    folder = tmp_path / "articles"
    folder.mkdir()
    target = folder / SEED.name
    shutil.copy(SEED, target)
    return target
