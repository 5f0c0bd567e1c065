"""Per-visitor settings and server secrets: a visitor's Settings-tab choice stays in their session,
and the server's API key never reaches a base URL a visitor typed. A real HTTP server on
127.0.0.1 records what arrives; the answers come from the real local model."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qa.config import Settings
from qa.errors import BackendError
from qa.models.backends import for_visitor

from .conftest import SEED

SECRET = "server-secret-key-123"
QUESTION = "Who said GSOMIA scrapping was a misjudgment?"


@pytest.fixture
def recorder():
    """An HTTP server that records every request's path and Authorization header, and answers
    like an OpenAI-compatible server that has no such model (404)."""
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"error": {"message": "no such model", "type": "invalid_request_error"}}).encode()
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _record

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


@pytest.fixture
def app(tmp_path, embedder, recorder):
    """The chat app over an embedded store holding the seed, with a server key configured for
    a server base URL that is not the recorder."""
    from qa.serve.ui import App

    url, _ = recorder
    settings = Settings(data_dir=tmp_path / "data", llm_api_key=SECRET, llm_base_url="http://127.0.0.1:9/v1",
                        allowed_base_urls="")
    app = App(settings)
    from qa.library import Library

    app.libraries[settings.collection] = Library(settings.data_dir, settings.collection, settings=settings, embedder=embedder)
    app.library().ingest([SEED])
    return app


def last_reply(app, backend: str, base_url: str, collection: str = "articles") -> str:
    history = None
    for history, _box, _sources in app.respond(QUESTION, [], collection, backend, "m", base_url, 30):
        pass
    return history[-1]["content"]


def test_a_typed_base_url_that_is_not_allowed_is_refused_before_any_request(app, recorder):
    url, seen = recorder
    reply = last_reply(app, "openai-compatible", url)
    assert reply.startswith("⚠️") and "is not allowed on this server" in reply and "QA_ALLOWED_BASE_URLS" in reply
    assert seen == []


def test_an_allowed_base_url_gets_no_server_key(app, recorder):
    url, seen = recorder
    app.settings = app.settings.model_copy(update={"allowed_base_urls": f"http://example.invalid/v1, {url}/"})
    reply = last_reply(app, "openai-compatible", url)
    assert reply.startswith("⚠️") and "has no model 'm'" in reply  # the recorder's 404, as a message
    assert seen, "the allowed server was asked"
    assert all(SECRET not in (auth or "") for _path, auth in seen), seen


def test_one_visitors_choice_does_not_change_anothers(app, recorder):
    url, seen = recorder
    app.settings = app.settings.model_copy(update={"allowed_base_urls": url})
    assert last_reply(app, "openai-compatible", url).startswith("⚠️")  # visitor A: their own server
    assert "Motegi" in last_reply(app, "local", "")  # visitor B: the local model, unaffected by A
    asked = len(seen)
    assert "Motegi" in last_reply(app, "", "")  # a new visitor gets the server's defaults
    assert len(seen) == asked and app.library().settings.llm_backend == "local"


def test_for_visitor_binds_keys_to_the_configured_server():
    server = Settings(llm_backend="openai-compatible", llm_base_url="http://llm.internal:8000/v1/", llm_api_key=SECRET,
                      allowed_base_urls="http://127.0.0.1:8080/v1")
    same = for_visitor(server, "openai-compatible", None, "http://llm.internal:8000/v1")
    assert same.llm_api_key.get_secret_value() == SECRET  # the operator's own server keeps its key
    other = for_visitor(server, "openai-compatible", "x", "http://127.0.0.1:8080/v1/")
    assert other.llm_base_url == "http://127.0.0.1:8080/v1" and other.llm_api_key is None
    with pytest.raises(BackendError, match=r"^base URL http://evil.example/v1 is not allowed on this server"):
        for_visitor(server, "openai-compatible", None, "http://evil.example/v1")
    assert for_visitor(server, "local").llm_backend == "local" and server.llm_backend == "openai-compatible"
    with pytest.raises(BackendError, match="unknown LLM backend"):
        for_visitor(server, "telnet")


def test_openai_key_from_the_environment_never_goes_to_another_base_url(monkeypatch, recorder):
    from qa.models.llms import OpenAILLM

    url, seen = recorder
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    llm = OpenAILLM("m", url, None, "chat", timeout=5, retries=0)
    with pytest.raises(BackendError):
        list(llm.stream([{"role": "user", "content": "hi"}], max_tokens=1))
    assert seen and all(SECRET not in (auth or "") for _path, auth in seen)


def test_two_browser_sessions_keep_their_own_settings(tmp_path, recorder):
    """Two visitors of one real `qa serve`: one points the Settings tab at an allowed server of
    their own, the other keeps the local model; each gets their own answers, and the typed server
    never receives the server's key."""
    import os
    import subprocess

    from playwright.sync_api import expect, sync_playwright

    from .conftest import free_port, server_process, wait_http
    from .test_ui import CHROMIUM, QA, launch_args

    url, seen = recorder
    env = {**os.environ, "QA_DATA_DIR": str(tmp_path / "data"), "QA_LLM_API_KEY": SECRET, "QA_ALLOWED_BASE_URLS": url}
    subprocess.run([QA, "ingest", str(SEED)], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    port = free_port()
    with server_process([QA, "serve", "--port", str(port)], tmp_path / "serve.log", cwd=tmp_path, env=env) as proc:
        wait_http(f"http://127.0.0.1:{port}/", 180, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=launch_args())
            a, b = (browser.new_context().new_page() for _ in range(2))
            for page in (a, b):
                page.set_default_timeout(90_000)
                page.goto(f"http://127.0.0.1:{port}/")
            a.get_by_role("tab", name="Settings").click()
            # Chosen from the open list, and checked, before asking: a busy machine renders the
            # filtered list late, and Enter on a list not yet filtered chooses nothing.
            a.locator("#backend input").click()
            a.get_by_role("option", name="openai-compatible", exact=True).click()
            expect(a.locator("#backend input")).to_have_value("openai-compatible")
            a.locator("#base-url textarea").fill(url)
            expect(a.locator("#base-url textarea")).to_have_value(url)
            a.get_by_role("tab", name="Chat").click()
            for page in (a, b):
                page.locator("#question textarea").fill(QUESTION)
                page.locator("#ask").click()
            expect(a.locator("#chat")).to_contain_text("has no model", timeout=90_000)  # A's own server answered
            expect(b.locator("#chat")).to_contain_text("Motegi", timeout=90_000)  # B: still the local model
            browser.close()
    assert seen and all(SECRET not in (auth or "") for _path, auth in seen)
