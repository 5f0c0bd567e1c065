"""The answer chain with real models: the packaged Gemma in-process, and the same model behind a
real llama_cpp.server reached through the openai client."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qa.config import Settings
from qa.answer.types import NOT_FOUND, Answer
from qa.answer.chain import Engine
from qa.answer.conversation import normalise_history
from qa.answer.prompting import pick_evidence
from qa.errors import BackendError
from qa.models.backends import get_llm

from .conftest import LLM_API_KEY, SEED

QUESTION = "Who said GSOMIA scrapping was a misjudgment?"
QUOTE = "complete misjudgment of the current regional security environment"


def assert_cites_the_quote(lib, answer: Answer):
    assert answer.citations, answer
    quoted = [c for c in answer.citations if QUOTE in c.quote]
    assert quoted, [c.quote for c in answer.citations]
    c = quoted[0]
    assert lib.article_text(c.article_id)[c.start : c.end] == c.quote
    assert c.title == "Japan, US say 3-way ties with S. Korea are key to security"


def test_local_answer_names_motegi_and_cites_the_quote(seeded_library):
    answer = seeded_library.ask(QUESTION)
    assert "Motegi" in answer.text and not answer.refused
    assert answer.grounded >= 0.5
    assert_cites_the_quote(seeded_library, answer)
    assert set(answer.timings) >= {"retrieve", "first_token", "generate", "total"}
    assert answer.kind == "span" and answer.signals["reader_best"] > 0  # the reader's candidate, the model's score


def test_uncovered_question_gets_the_not_found_answer_with_closest_passages(seeded_library):
    answer = seeded_library.ask("What is the population of Tokyo?")
    assert answer.text == NOT_FOUND and answer.refused and answer.kind == "not_found" and answer.citations == []
    assert answer.closest, "a refusal still shows the closest passages"
    text = seeded_library.article_text(answer.closest[0].article_id)
    assert all(text[c.start : c.end] == c.quote for c in answer.closest)
    assert answer.to_dict()["closest"] and answer.to_dict()["kind"] == "not_found"


def test_stream_yields_tokens_then_the_answer(seeded_library):
    items = list(seeded_library.stream(QUESTION))
    assert isinstance(items[-1], Answer)
    tokens = items[:-1]
    assert tokens and all(isinstance(t, str) for t in tokens)
    assert "Motegi" in "".join(tokens)


def test_follow_up_is_rewritten_with_the_previous_answer(seeded_library):
    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Motegi [1]"}]
    assert normalise_history(history) == [(QUESTION, "Motegi [1]")]
    standalone, searched = seeded_library.engine.condense("What did he say about export controls?", history)
    assert standalone == searched == "What did Motegi say about export controls?"
    # A pronoun left over ("it") needs the previous question's topic in the search.
    standalone, searched = seeded_library.engine.condense("What did he call it?", history)
    assert standalone == "What did Motegi call it?" and searched == f"{QUESTION} {standalone}"
    assert seeded_library.engine.condense("What is GSOMIA short for?", None) == ("What is GSOMIA short for?",) * 2


def test_evidence_sentences_keep_article_offsets(seeded_library):
    ranked = seeded_library.sentences(QUESTION)
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert QUOTE in ranked[0].text  # the quote's sentence ranks first, not just its chunk
    articles = pick_evidence(ranked, 600)
    evidence = [e for group in articles for e in group]
    text = seeded_library.article_text(ranked[0].hit.article_id)
    assert len(articles) == 1 and 2 <= len(evidence) and sum(len(e.text) + 1 for e in evidence) <= 600
    assert [e.start for e in evidence] == sorted(e.start for e in evidence)  # reading order within the article
    assert all(text[e.start : e.end] == e.text and e.hit.start <= e.start < e.end <= e.hit.end for e in evidence)
    assert any(QUOTE in e.text for e in evidence)


def openai_compatible(lib, server_url, key=LLM_API_KEY):
    settings = Settings(llm_backend="openai-compatible", llm_base_url=server_url, llm_api="completions",
                        llm_model="gemma", llm_api_key=key, llm_timeout=60, llm_retries=0)
    return Engine(lib, get_llm(settings), settings)


def test_openai_compatible_server_answers_streams_and_cites(seeded_library, llm_server):
    engine = openai_compatible(seeded_library, llm_server)
    items = list(engine.stream(QUESTION))
    answer = items[-1]
    assert len(items) > 2 and all(isinstance(t, str) for t in items[:-1])
    assert "Motegi" in answer.text
    assert_cites_the_quote(seeded_library, answer)


def test_wrong_key_and_unreachable_server_are_clear_errors(seeded_library, llm_server):
    with pytest.raises(BackendError, match=r"^LLM server at http://127.0.0.1:\d+/v1 rejected the API key$"):
        openai_compatible(seeded_library, llm_server, key="wrong").ask(QUESTION)
    with pytest.raises(BackendError, match=r"^LLM server unreachable at http://127.0.0.1:9/v1$"):
        openai_compatible(seeded_library, "http://127.0.0.1:9/v1").ask(QUESTION)


def test_cli_ask_json_and_errors(tmp_path):
    qa = [str(Path(sys.executable).parent / "qa")]
    run = lambda *a: subprocess.run(qa + list(a), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run("ingest", str(SEED)).returncode == 0
    result = run("ask", "--json", QUESTION)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"answer", "kind", "citations", "closest", "grounded", "timings"}
    assert data["kind"] == "span"
    assert "Motegi" in data["answer"]
    assert set(data["citations"][0]) >= {"n", "title", "article_id", "quote", "start", "end"}
    plain = run("ask", QUESTION)
    assert "Motegi" in plain.stdout and "[1] Japan, US say 3-way ties" in plain.stdout
    down = run("ask", "--backend", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1", QUESTION)
    assert down.returncode == 2
    assert down.stderr.strip() == "error: LLM server unreachable at http://127.0.0.1:9/v1"


def test_a_loader_shared_by_a_warm_up_thread_runs_once():
    """`qa ask` loads spaCy, the lemma tables and the local model in a thread while it opens the
    store; the first question may ask for the same thing meanwhile: it must wait for that load,
    not start a second one."""
    import threading
    import time

    from qa.lazy import load_once

    calls = []

    @load_once
    def slow():
        calls.append(threading.current_thread().name)
        time.sleep(0.3)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow()), name=f"t{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1 and slow() is results[0]


def test_preloading_then_asking_loads_the_local_model_once(seeded_library, monkeypatch):
    """The warm-up thread and the question share one model (and one primed prefix)."""
    from qa.answer.preload import preload_answering
    from qa.models.llms import LocalLLM

    llm = get_llm(seeded_library.settings)
    llm.close()  # as in a fresh process: not loaded yet
    loads = []
    original = LocalLLM._load
    monkeypatch.setattr(LocalLLM, "_load", lambda self: (loads.append(self), original(self)))
    threads = preload_answering(seeded_library.settings, QUESTION)
    answer = seeded_library.ask(QUESTION)
    for thread in threads:
        thread.join(60)
    assert "Motegi" in answer.text and len(loads) == 1
