"""The REST API and the OpenAI-compatible endpoints of a real `qa serve`, reached over HTTP with
urllib and with the `openai` SDK; answers from the real local model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from .conftest import SEED, free_port, server_process, wait_http

QA = str(Path(sys.executable).parent / "qa")
QUESTION = "Who said GSOMIA scrapping was a misjudgment?"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("api")
    env = {**os.environ, "QA_DATA_DIR": str(home / "data"), "QA_COLLECTIONS": "articles,second", "HF_HUB_OFFLINE": "1"}
    subprocess.run([QA, "ingest", str(SEED)], cwd=home, env=env, check=True, capture_output=True, timeout=300)
    port = free_port()
    with server_process([QA, "serve", "--port", str(port)], home / "serve.log", cwd=home, env=env) as proc:
        wait_http(f"http://127.0.0.1:{port}/v1/health", 180, proc)
        yield f"http://127.0.0.1:{port}"


def call(method: str, url: str, body=None, headers=None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_models_and_docs(service):
    status, schema = call("GET", f"{service}/openapi.json")
    assert status == 200 and {"/v1/ask", "/v1/chat/completions", "/v1/articles/{article_id}"} <= set(schema["paths"])
    status, health = call("GET", f"{service}/v1/health")
    assert status == 200 and health["ok"] and health["articles"] == 1 and health["store"] == health["llm_status"] == "ok"
    assert set(health["versions"]) >= {"articles-qa", "chromadb"}
    from qa.models.encoders import VARIANTS

    assert health["encoder"]["collection"] in VARIANTS and health["encoder"]["questions"] in VARIANTS
    status, models = call("GET", f"{service}/v1/models")
    assert [m["id"] for m in models["data"]] == ["articles", "second"]


def test_ask_returns_the_answer_as_data(service):
    status, answer = call("POST", f"{service}/v1/ask", {"question": QUESTION})
    assert status == 200 and answer["kind"] == "span" and "Motegi" in answer["answer"]
    assert "complete misjudgment" in answer["citations"][0]["quote"]
    assert set(answer["citations"][0]) >= {"title", "quote", "start", "end", "published"}
    status, fact = call("POST", f"{service}/v1/ask", {"question": "Who wrote it?",
                                                     "history": [["When was the article published?", "2019-11-12"]]})
    assert (fact["kind"], fact["answer"]) == ("fact", "Mari Yamaguchi")


def test_ask_streams_server_sent_events(service):
    request = urllib.request.Request(f"{service}/v1/ask", data=json.dumps({"question": QUESTION, "stream": True}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=300) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [block for block in response.read().decode().split("\n\n") if block.strip()]
    kinds = [block.splitlines()[0].removeprefix("event: ") for block in events]
    assert kinds[-1] == "answer" and "token" in kinds[:-1]
    final = json.loads(events[-1].splitlines()[1].removeprefix("data: "))
    assert "Motegi" in final["answer"] and final["citations"]


def test_openai_sdk_against_chat_completions(service):
    from openai import OpenAI

    client = OpenAI(base_url=f"{service}/v1", api_key="unused")
    reply = client.chat.completions.create(model="articles", messages=[{"role": "user", "content": QUESTION}])
    text = reply.choices[0].message.content
    assert "Motegi" in text and "[1]" in text
    assert "complete misjudgment" in reply.model_extra["citations"][0]["quote"]
    parts = []
    for event in client.chat.completions.create(model="articles", messages=[{"role": "user", "content": QUESTION}], stream=True):
        if event.choices and event.choices[0].delta.content:
            parts.append(event.choices[0].delta.content)
    assert "Motegi" in "".join(parts) and "[1]" in "".join(parts)


def test_search_ingest_delete_round_trip(service):
    article_id = f"ferry-{uuid.uuid4().hex[:6]}"
    record = {"id": article_id, "title": "Ferry line reopens", "published": "2019-11-14",
              "text": "The Busan ferry line reopened on Thursday after a two-week strike, operators said."}
    status, report = call("POST", f"{service}/v1/articles", {"records": [record]})
    assert status == 200 and report["added"] == [article_id] and report["rejected"] == []
    status, found = call("GET", f"{service}/v1/search?q=Which+ferry+line+reopened%3F&k=3")
    assert status == 200 and found["passages"][0]["article_id"] == article_id
    assert found["passages"][0]["text"].startswith("The Busan ferry line reopened")
    status, listed = call("GET", f"{service}/v1/articles")
    assert article_id in [a["id"] for a in listed["articles"]]
    assert call("DELETE", f"{service}/v1/articles/{article_id}") == (200, {"deleted": article_id})
    status, gone = call("DELETE", f"{service}/v1/articles/{article_id}")
    assert status == 404 and gone["error"]["message"] == f"no article '{article_id}'"
    status, listed = call("GET", f"{service}/v1/articles")
    assert article_id not in [a["id"] for a in listed["articles"]]


def test_bad_requests_get_one_line_json_errors(service):
    status, body = call("POST", f"{service}/v1/ask", b"{not json")
    assert status == 400 and "\n" not in body["error"]["message"]
    status, body = call("POST", f"{service}/v1/ask", {"question": ""})
    assert (status, body["error"]["message"]) == (400, "question: is empty")
    status, body = call("POST", f"{service}/v1/ask", {"question": QUESTION, "collection": "nope"})
    assert status == 404 and "unknown collection 'nope'" in body["error"]["message"]
    status, body = call("POST", f"{service}/v1/articles", {"records": [{"title": "no text"}]})
    assert status == 200 and body["added"] == [] and "text" in body["rejected"][0]["reason"]
    status, body = call("GET", f"{service}/v1/search?q=x&k=0")
    assert status == 400 and body["error"]["message"] == "k: Input should be greater than or equal to 1"
    status, before = call("GET", f"{service}/v1/articles")
    status, body = call("POST", f"{service}/v1/articles", {"records": "nope"})
    assert status == 400 and body["error"]["message"].startswith("body: expected JSON")
    assert call("GET", f"{service}/v1/articles")[1] == before


# --- tokens with roles ------------------------------------------------------------------------------
TOKENS = "ann:reader-token-1:reader,ed:editor-token-2:editor"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """`qa serve` with tokens: a reader and an editor."""
    home = tmp_path_factory.mktemp("guarded")
    env = {**os.environ, "QA_DATA_DIR": str(home / "data"), "QA_TOKENS": TOKENS, "HF_HUB_OFFLINE": "1"}
    subprocess.run([QA, "ingest", str(SEED)], cwd=home, env=env, check=True, capture_output=True, timeout=300)
    port = free_port()
    with server_process([QA, "serve", "--port", str(port)], home / "serve.log", cwd=home, env=env) as proc:
        wait_http(f"http://127.0.0.1:{port}/", 180, proc)
        yield f"http://127.0.0.1:{port}", home


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_roles_on_the_api(guarded):
    url, _home = guarded
    article = "2019-11-12-japan-us-gsomia"
    status, body = call("GET", f"{url}/v1/articles")
    assert status == 401 and "Bearer" in body["error"]["message"]
    assert call("GET", f"{url}/v1/openapi.json")[0] == 401
    status, schema = call("GET", f"{url}/v1/openapi.json", headers=bearer("reader-token-1"))
    assert status == 200 and "/v1/ask" in schema["paths"]
    with pytest.raises(urllib.error.HTTPError):  # the page, its API and /docs want a login too
        urllib.request.urlopen(f"{url}/docs", timeout=10)
    assert call("GET", f"{url}/v1/articles", headers=bearer("wrong"))[0] == 401
    status, listed = call("GET", f"{url}/v1/articles", headers=bearer("reader-token-1"))
    assert status == 200 and [a["id"] for a in listed["articles"]] == [article]
    status, answer = call("POST", f"{url}/v1/ask", {"question": QUESTION}, headers=bearer("reader-token-1"))
    assert status == 200 and "Motegi" in answer["answer"]
    status, body = call("DELETE", f"{url}/v1/articles/{article}", headers=bearer("reader-token-1"))
    assert status == 403 and body["error"]["message"] == "the reader role cannot do this (it needs editor)"
    status, body = call("POST", f"{url}/v1/articles", {"records": [{"text": "A new article."}]}, headers=bearer("reader-token-1"))
    assert status == 403
    status, listed = call("GET", f"{url}/v1/articles", headers=bearer("editor-token-2"))
    assert [a["id"] for a in listed["articles"]] == [article]  # nothing changed
    record = {"id": "ferry", "text": "The Busan ferry line reopened on Thursday after a two-week strike."}
    status, report = call("POST", f"{url}/v1/articles", {"records": [record]}, headers=bearer("editor-token-2"))
    assert status == 200 and report["added"] == ["ferry"]
    assert call("DELETE", f"{url}/v1/articles/ferry", headers=bearer("editor-token-2")) == (200, {"deleted": "ferry"})


def test_roles_on_the_page(guarded):
    """The page's login takes a token's name and the token; a reader sees no upload, delete or
    settings controls, an editor does; and the server refuses a reader's ingest call too."""
    from gradio_client import Client, handle_file

    url, home = guarded
    from playwright.sync_api import expect, sync_playwright

    from .test_ui import CHROMIUM, launch_args

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=launch_args())
        for name, token, sees in (("ann", "reader-token-1", False), ("ed", "editor-token-2", True)):
            page = browser.new_context().new_page()
            page.set_default_timeout(60_000)
            page.goto(url + "/")
            page.get_by_label("username").fill(name)
            page.get_by_label("password").fill(token)
            page.get_by_role("button", name="Login").click()
            expect(page.locator("#signed-in")).to_contain_text(f"Signed in as {name}", timeout=60_000)
            page.get_by_role("tab", name="Library").click()
            expect(page.locator("#articles")).to_contain_text("2019-11-12-japan-us-gsomia")
            assert page.locator("#upload").is_visible() is sees
            assert page.locator("#delete").is_visible() is sees
            page.get_by_role("tab", name="Settings").click()
            assert page.locator("#backend").is_visible() is sees and page.locator("#base-url").is_visible() is sees
        browser.close()
    article = home / "note.txt"
    article.write_text("A short note about ferries reopening in Busan on Thursday.\n")
    with pytest.raises(Exception, match="may not add articles"):
        Client(url + "/", auth=("ann", "reader-token-1"), verbose=False).predict([handle_file(str(article))], api_name="/ingest")


def test_files_upload_and_oversize_upload(service):
    boundary = uuid.uuid4().hex

    def multipart(name: str, data: bytes) -> bytes:
        return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                "Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    text = b"Harbour reopens\n\nThe old harbour in Kobe reopened on Monday after repairs, officials said.\n"
    status, report = call("POST", f"{service}/v1/articles", multipart("../../2019-11-20-harbour.txt", text), headers)
    assert status == 200 and report["added"] == ["2019-11-20-harbour"]
    assert call("DELETE", f"{service}/v1/articles/2019-11-20-harbour")[0] == 200
    status, before = call("GET", f"{service}/v1/articles")
    status, body = call("POST", f"{service}/v1/articles", multipart("big.txt", b"word " * 4_200_001), headers)
    assert status == 413 and body["error"]["message"] == "big.txt: larger than 20 MB"
    assert call("GET", f"{service}/v1/articles")[1] == before


def test_health_says_when_the_llm_server_is_down(tmp_path, llm_server):
    from qa.errors import BackendError
    from qa.models.llms import OpenAILLM

    from .conftest import LLM_API_KEY

    OpenAILLM("gemma", llm_server, LLM_API_KEY, "completions", timeout=10, retries=0).check()  # a real server: fine
    with pytest.raises(BackendError, match="rejected the API key"):
        OpenAILLM("gemma", llm_server, "wrong", "completions", timeout=10, retries=0).check()
    env = {**os.environ, "QA_DATA_DIR": str(tmp_path / "data"), "QA_LLM_BACKEND": "openai-compatible",
           "QA_LLM_BASE_URL": "http://127.0.0.1:9/v1"}
    port = free_port()
    with server_process([QA, "serve", "--port", str(port)], tmp_path / "serve.log", cwd=tmp_path, env=env) as proc:
        wait_http(f"http://127.0.0.1:{port}/", 180, proc)
        status, health = call("GET", f"http://127.0.0.1:{port}/v1/health")
    assert status == 503 and not health["ok"] and health["store"] == "ok"
    assert health["llm_status"] == "LLM server unreachable at http://127.0.0.1:9/v1"


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are a Linux matter here")
def test_uploads_are_written_at_low_priority_so_questions_keep_the_cpu():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from qa.serve.api import INGEST_NICENESS, INGEST_THREADS

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def in_a_thread_it_starts() -> int:  # as Library._write starts its Chroma writer
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(niceness).result()

    own = niceness()
    assert INGEST_THREADS.submit(niceness).result() == min(19, own + INGEST_NICENESS) > own
    assert INGEST_THREADS.submit(in_a_thread_it_starts).result() == min(19, own + INGEST_NICENESS)
