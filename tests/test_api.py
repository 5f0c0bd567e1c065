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


def test_health_and_models(service):
    status, health = call("GET", f"{service}/v1/health")
    assert status == 200 and health["ok"] and health["articles"] == 1 and health["store"] == "ok"
    assert set(health["versions"]) >= {"articles-qa", "chromadb"}
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
    assert status == 400 and body["error"]["message"] == "k: must be between 1 and 100"
    status, before = call("GET", f"{service}/v1/articles")
    status, body = call("POST", f"{service}/v1/articles", {"records": "nope"})
    assert status == 400 and body["error"]["message"].startswith("body: expected JSON")
    assert call("GET", f"{service}/v1/articles")[1] == before
