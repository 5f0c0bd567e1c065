"""The REST API fuzzed from its own schema (schemathesis): requests generated from
/v1/openapi.json, valid and invalid, against a real `qa serve` with tokens on, on the seed and the
local model. Every response must be no 5xx, in the documented status codes and schema, every
error in the one format {"error": {"message", "type"}} on one line, and a rejected write must
leave the store as it was.

Examples per operation: QA_FUZZ_EXAMPLES (default 25 here, for `make test`; by hand, e.g.
QA_FUZZ_EXAMPLES=250 .venv/bin/python -m pytest tests/test_api_fuzz.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis brings hypothesis)
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import SEED, free_port, server_process, wait_http  # noqa: E402
from .test_api import QA, TOKENS, bearer, call  # noqa: E402

EXAMPLES = int(os.environ.get("QA_FUZZ_EXAMPLES", "25"))
EDITOR = bearer("editor-token-2")
WRITES = {"POST /v1/articles", "DELETE /v1/articles/{article_id}", "POST /v1/feeds", "DELETE /v1/feeds"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    env = {**os.environ, "QA_DATA_DIR": str(home / "data"), "QA_TOKENS": TOKENS, "HF_HUB_OFFLINE": "1"}
    subprocess.run([QA, "ingest", str(SEED)], cwd=home, env=env, check=True, capture_output=True, timeout=300)
    port = free_port()
    with server_process([QA, "serve", "--port", str(port)], home / "serve.log", cwd=home, env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/", 180, proc)
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    return schemathesis.openapi.from_url(f"{fuzzed}/v1/openapi.json", headers=EDITOR)


def store_state(url: str) -> str:
    """A fingerprint of what the store holds: every article's id and content hash."""
    status, body = call("GET", f"{url}/v1/articles", headers=EDITOR)
    assert status == 200, body
    return hashlib.sha256(json.dumps(sorted((a["id"], a["content_hash"]) for a in body["articles"])).encode()).hexdigest()


@schemathesis.check
def one_error_format(ctx, response, case):
    """Every error is {"error": {"message": one line, "type": str}}."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    message = body["error"]["message"]
    assert isinstance(message, str) and message and "\n" not in message, body
    assert isinstance(body["error"]["type"], str), body
    return True


OPERATIONS = ["POST /v1/ask", "GET /v1/search", "GET /v1/articles", "POST /v1/articles", "DELETE /v1/articles/{article_id}",
              "GET /v1/models", "POST /v1/chat/completions", "GET /v1/health",
              "GET /v1/feeds", "POST /v1/feeds", "DELETE /v1/feeds"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, one_error_format]


def test_the_fuzzed_operations_are_all_of_them(api_schema):
    found = sorted(f"{r.ok().method.upper()} {r.ok().path}" for r in api_schema.get_all_operations())
    assert found == sorted(OPERATIONS)


# schemathesis's own pytest plugin (lazy schemas from fixtures) does not run on pytest 9.2: each
# operation and mode is one test here, driving hypothesis with the operation's strategy.
@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("name", OPERATIONS)
def test_api_from_its_schema(api_schema, fuzzed, name, mode):
    from hypothesis import given

    operation = next(r.ok() for r in api_schema.get_all_operations() if f"{r.ok().method.upper()} {r.ok().path}" == name)
    write = name in WRITES

    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        before = store_state(fuzzed) if write else None
        # The editor's token, unless this case is about a missing or wrong Authorization header.
        header_case = any(getattr(where, "value", str(where)).lower() == "header" and info.mode.name == "NEGATIVE"
                          for where, info in case.meta.components.items())
        response = case.call_and_validate(base_url=fuzzed, headers=None if header_case else EDITOR, timeout=120, checks=CHECKS)
        if write and response.status_code >= 400:
            assert store_state(fuzzed) == before, f"a rejected {name} changed the store"

    run()


# --- the rows of issue 20's table, by name -----------------------------------------------------------
def test_unknown_filter_field_is_a_400_naming_it(fuzzed):
    status, body = call("POST", f"{fuzzed}/v1/ask", {"question": "Who is Motegi?", "filters": {"evil": "1"}}, headers=EDITOR)
    assert status == 400 and body["error"]["message"] == "filters: unknown field 'evil'"


def test_impossible_and_reversed_dates_are_a_400_naming_field_and_value(fuzzed):
    status, body = call("POST", f"{fuzzed}/v1/ask", {"question": "Who is Motegi?", "filters": {"date_from": "2019-13-45"}},
                        headers=EDITOR)
    assert status == 400 and body["error"]["message"] == "filters.date_from: not a calendar date YYYY-MM-DD: '2019-13-45'"
    status, body = call("POST", f"{fuzzed}/v1/ask",
                        {"question": "Who is Motegi?", "filters": {"date_from": "2019-11-30", "date_to": "2019-11-01"}}, headers=EDITOR)
    assert status == 400 and "date_from 2019-11-30 is after date_to 2019-11-01" in body["error"]["message"]


def test_unparsable_bodies_get_the_project_error_shape(fuzzed):
    for data in (b"\xff\xfe\x00not json", b"[" * 100_000, b"", b'{"question": '):
        status, body = call("POST", f"{fuzzed}/v1/ask", data, headers=EDITOR)  # bytes go as they are
        assert status == 400 and set(body) == {"error"} and body["error"]["message"], (data[:20], body)


def test_history_beyond_the_limits_is_a_400(fuzzed):
    turns = [["What happened?", "Japan and South Korea met."]] * 20_000
    status, body = call("POST", f"{fuzzed}/v1/ask", {"question": "Who is Motegi?", "history": turns}, headers=EDITOR)
    assert status == 400 and body["error"]["message"] == "history: more than 50 turns"
    long_turn = [["x" * 15_000, "y" * 15_000]]
    status, body = call("POST", f"{fuzzed}/v1/ask", {"question": "Who is Motegi?", "history": long_turn}, headers=EDITOR)
    assert status == 400 and body["error"]["message"] == "history: 30000 characters, more than 20000"


def test_rows_that_were_already_right_stay_right(fuzzed):
    status, body = call("POST", f"{fuzzed}/v1/ask", {"question": "x" * 10_000_000}, headers=EDITOR)
    assert status == 400 and "question" in body["error"]["message"]
    status, body = call("POST", f"{fuzzed}/v1/ask", {"question": 42}, headers=EDITOR)
    assert status == 400 and body["error"]["message"].startswith("question:")
    status, body = call("POST", f"{fuzzed}/v1/ask", {}, headers=EDITOR)
    assert status == 400 and body["error"]["message"] == "question: Field required"
    status, body = call("POST", f"{fuzzed}/v1/ask", {"question": "Who?", "collection": "nope"}, headers=EDITOR)
    assert status == 404
    status, body = call("POST", f"{fuzzed}/v1/chat/completions", {"messages": []}, headers=EDITOR)
    assert status == 400 and body["error"]["message"].startswith("messages:")


def test_the_schema_documents_every_route_and_its_errors(fuzzed):
    status, document = call("GET", f"{fuzzed}/v1/openapi.json", headers=EDITOR)
    assert status == 200
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "200" in responses and "401" in responses, (method, path)
            ok = responses["200"]["content"]["application/json"]["schema"]
            assert "$ref" in ok or ok.get("type") == "object", (method, path, ok)
            assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    filters = document["components"]["schemas"]["AskFilters"]
    assert filters["additionalProperties"] is False and set(filters["properties"]) == {"article_id", "source", "date_from", "date_to"}
