"""The packaged MiniLM's four encoders: ONNX export and its cache, agreement with torch fp32, the
per-machine choice, collections that record their encoder, questions answered without torch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import SEED

QA = str(Path(sys.executable).parent / "qa")
QUESTION = "Who said GSOMIA scrapping was a misjudgment?"


def seed_sentences() -> list[str]:
    from qa.ingest.articles import load_file
    from qa.text.chunking import chunk_text

    text = load_file(SEED).articles[0].text
    return [text[s:e] for c in chunk_text(text, 320, 0) for s, e in (c.sentences or [(c.start, c.end)])]


def test_export_is_cached_under_the_weights_hash_and_the_export_settings(tmp_path, monkeypatch):
    from qa.models import onnx_export
    from qa.models.encoders import USABLE_COSINE, minilm_dir, onnx_files

    folder = onnx_files(minilm_dir(), tmp_path)
    manifest = onnx_export.read_manifest(folder)
    int8 = folder / onnx_export.INT8_FILE
    assert int8.stat().st_size < 0.3 * (folder / onnx_export.FP32_FILE).stat().st_size  # int8 weights: a quarter
    assert manifest["probe_min_cosine_to_torch_fp32"]["onnx-fp32"] >= onnx_export.EXPORT_MIN_COSINE
    assert manifest["probe_min_cosine_to_torch_fp32"]["onnx-int8"] >= USABLE_COSINE
    assert manifest["weights_sha256"] in json.loads((tmp_path / "weights-hashes.json").read_text()).values()

    written = int8.stat().st_mtime_ns
    assert onnx_files(minilm_dir(), tmp_path) == folder and int8.stat().st_mtime_ns == written  # reused

    changed = {**onnx_export.EXPORT_SETTINGS, "opset": onnx_export.EXPORT_SETTINGS["opset"] + 1}
    monkeypatch.setattr(onnx_export, "EXPORT_SETTINGS", changed)
    assert onnx_export.export_folder(minilm_dir(), tmp_path) != folder  # another recipe, another folder


def test_every_encoder_agrees_with_torch_fp32_and_int8_vectors_depend_on_the_text_alone():
    from qa.models.encoders import SAME_VECTORS_COSINE, USABLE_COSINE, cpu_supports_bf16, local_encoders
    from qa.cache import default_cache_dir

    encoders = local_encoders(default_cache_dir())
    sentences = seed_sentences()
    reference = encoders.load("torch-fp32").encode(sentences)
    variants = ["onnx-fp32", "onnx-int8"] + (["torch-bf16"] if cpu_supports_bf16() else [])
    for variant in variants:
        cosines = (reference * encoders.load(variant).encode(sentences)).sum(axis=1)
        floor = USABLE_COSINE if variant == "onnx-int8" else SAME_VECTORS_COSINE
        assert cosines.min() >= floor, (variant, cosines.min())
    int8 = encoders.load("onnx-int8")
    together = int8.encode(sentences)
    alone = np.array([int8.encode_one(s) for s in sentences])
    assert (together * alone).sum(axis=1).min() > 0.99999  # no batch neighbours shift a vector


def test_the_choice_takes_the_fastest_usable_encoder_unless_a_faithful_one_is_nearly_as_fast():
    from qa.models.encoders import choose

    def results(int8_seconds, int8_cosine=0.990):
        return {
            "torch-fp32": {"seconds": 1.0, "min_cosine": 1.0},
            "torch-bf16": {"seconds": None, "min_cosine": None, "skipped": "no native bf16"},
            "onnx-fp32": {"seconds": 0.6, "min_cosine": 1.0},
            "onnx-int8": {"seconds": int8_seconds, "min_cosine": int8_cosine},
        }

    assert choose(results(0.3)) == "onnx-int8"
    assert choose(results(0.57)) == "onnx-fp32"  # int8 would cost recall for 5% speed
    assert choose(results(0.1, int8_cosine=0.6)) == "onnx-fp32"  # a broken kernel is never chosen


def test_a_precision_can_be_forced_and_a_wrong_one_is_named(monkeypatch):
    from qa.config import Settings
    from qa.models.embeddings import get_embedder
    from qa.errors import BackendError

    monkeypatch.setenv("QA_EMBED_PRECISION", "int8")
    assert get_embedder(Settings()).writer == "onnx-int8"
    with pytest.raises(BackendError, match="not 'fp16'"):
        get_embedder(Settings(embed_precision="fp16"))


def test_a_collection_records_its_encoder_and_refuses_vectors_that_disagree(tmp_path, seed_copy):
    from qa.config import Settings
    from qa.errors import BackendError
    from qa.library import Library
    from qa.store.chroma import ENCODER_KEY

    data = str(tmp_path / "data")
    second = tmp_path / "second.txt"
    second.write_text("Title: Rain in Osaka\n\nHeavy rain is expected across the region through Thursday, forecasters said.\n")

    int8 = Library(data, "int8", settings=Settings(embed_precision="onnx-int8"))
    int8.ingest([seed_copy])
    assert int8.store.recorded_encoder() == "onnx-int8"
    forced = Library(data, "int8", settings=Settings(embed_precision="torch-fp32"))
    with pytest.raises(BackendError, match="embedded with onnx-int8; QA_EMBED_PRECISION=torch-fp32 gives vectors that disagree"):
        forced.ingest([second])
    assert [r.id for r in forced.articles()] == [r.id for r in int8.articles()]  # nothing stored
    from qa.answer import answerability as engine

    answer = int8.ask(QUESTION)
    assert int8.engine.encoder == "onnx-int8"
    assert answer.signals["answerability"] == pytest.approx(engine.answerability(answer.signals, "local", "onnx-int8"))
    # A rule fitted with an encoder's own signals serves its collections; the others the top-level one.
    rules = engine.answerability_rules()
    top_level = engine.answerability(answer.signals, "local", None)
    own = {"local": {"bias": 5.0, "weights": {}, "threshold": 0.5}}
    try:
        original = engine.answerability_rules
        engine.answerability_rules = lambda: rules | {"encoders": {"onnx-int8": own}}
        assert engine.answerability(answer.signals, "local", "onnx-int8") == pytest.approx(1 / (1 + math.exp(-5.0)))
        assert engine.answerability(answer.signals, "local", "onnx-fp32") == pytest.approx(top_level)
    finally:
        engine.answerability_rules = original
    auto = Library(data, "int8", settings=Settings(embed_precision="auto"))
    assert (auto.embedder.writer, auto.embedder.reader) == ("onnx-int8", "onnx-int8")

    fp32 = Library(data, "fp32", settings=Settings(embed_precision="torch-fp32"))
    fp32.ingest([seed_copy])
    onnx = Library(data, "fp32", settings=Settings(embed_precision="onnx-fp32"))
    assert onnx.ingest([second]).added  # the same vectors: may share the collection
    assert onnx.store.recorded_encoder() == "torch-fp32"
    assert Library(data, "fp32", settings=Settings(embed_precision="auto")).embedder.reader == "onnx-fp32"

    # A collection from before encoders were recorded was written by torch (fp32 or bf16).
    meta = {k: v for k, v in fp32.store.chunks.metadata.items() if k != ENCODER_KEY and not k.startswith("hnsw:")}
    fp32.store.client.get_collection("fp32").modify(metadata=meta)
    assert Library(data, "fp32", settings=Settings()).store.recorded_encoder() == "torch-fp32"


def _ask_in_new_process(env: dict, *command: str) -> subprocess.CompletedProcess:
    script = (
        # app(), not main(): main() is the `qa` process itself, which ends at once after an answer.
        "import sys\nfrom qa.cli import app\nsys.argv = ['qa', *sys.argv[1:]]\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('loaded:', sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules), file=sys.stderr)\n"
    )
    return subprocess.run([sys.executable, "-c", script, *command], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("written_with, asked_with", [("onnx-int8", "onnx-int8"), ("torch-fp32", "auto")])
def test_answering_on_the_onnx_path_never_imports_torch(tmp_path, written_with, asked_with):
    env = {**os.environ, "QA_DATA_DIR": str(tmp_path / "data"), "QA_EMBED_PRECISION": written_with}
    subprocess.run([QA, "ingest", str(SEED)], env=env, check=True, capture_output=True, timeout=300)
    env["QA_EMBED_PRECISION"] = asked_with
    for command in (["ask", QUESTION], ["search", "--json", QUESTION]):
        done = _ask_in_new_process(env, *command)
        assert "Motegi" in done.stdout, done.stderr
        assert "loaded: []" in done.stderr, done.stderr


def test_the_server_warms_up_and_answers_without_torch(tmp_path):
    """What `qa serve` runs: the page and API modules, the start-up warm-up, then a question."""
    env = {**os.environ, "QA_DATA_DIR": str(tmp_path / "data"), "QA_EMBED_PRECISION": "onnx-int8"}
    subprocess.run([QA, "ingest", str(SEED)], env=env, check=True, capture_output=True, timeout=300)
    script = (
        "import sys\nimport qa.serve.api, qa.serve.ui\nfrom qa.config import get_settings\n"
        "app = qa.serve.ui.App(get_settings())\napp.warm_up()\nprint(app.library().ask(sys.argv[1]).text)\n"
        "print('loaded:', sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, QUESTION], env=env, capture_output=True, text=True, timeout=300)
    assert "Motegi" in done.stdout and "loaded: []" in done.stdout, done.stdout + done.stderr


def test_an_unwritable_cache_is_one_line_naming_it_and_stores_nothing(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    env = {**os.environ, "QA_DATA_DIR": str(tmp_path / "data"), "QA_CACHE_DIR": str(blocker / "cache")}
    done = subprocess.run([QA, "ingest", str(SEED)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot write the encoder cache in {blocker / 'cache'}")
    assert "QA_CACHE_DIR" in done.stderr
    listed = subprocess.run([QA, "articles", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(listed.stdout) == []


def test_qa_info_reports_versions_cpu_encoder_llm_and_store(tmp_path):
    env = {**os.environ, "QA_DATA_DIR": str(tmp_path / "data")}
    empty = subprocess.run([QA, "info"], env=env, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 0 and "no store yet" in empty.stdout
    assert not (tmp_path / "data").exists()  # looking creates nothing

    subprocess.run([QA, "ingest", str(SEED)], env=env, check=True, capture_output=True, timeout=300)
    info = json.loads(subprocess.run([QA, "info", "--json"], env=env, capture_output=True, text=True, timeout=120).stdout)
    assert info["versions"]["onnxruntime"] and info["versions"]["articles-qa"]
    assert "avx2" in info["cpu"]["flags"] or not Path("/proc/cpuinfo").read_text().count(" avx2")
    assert info["encoder"]["chosen_here"] in ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
    assert info["store"]["encoder"] == info["encoder"]["chosen_here"]  # the ingest used this machine's choice
    assert info["store"]["articles"] == 1 and info["store"]["chunks"] > 0 and info["store"]["bytes_on_disk"] > 0
    assert info["llm"]["backend"] == "local" and info["llm"]["local_model"] == "gemma-3-270m"
    assert info["llm"]["gemma-3-270m"]["file"]["bytes"] > 100_000_000
    assert isinstance(info["llm"]["gemma-3-270m"]["speed_here"], (str, dict))  # measured only by --measure-llm


def test_the_local_model_restores_its_prompt_prefix_and_answers_the_same(tmp_path):
    from qa.answer.prompting import prompt_template
    from qa.models.llms import LocalLLM

    template = prompt_template("local_answer.txt")
    prefix = template.split("Evidence: {evidence}")[0]
    prompt = template.rstrip().format(evidence="Motegi said Tuesday that scrapping GSOMIA was a complete misjudgment.", question=QUESTION)

    def answer(llm):
        return "".join(llm.stream(prompt, max_tokens=12, stop=["\n"]))

    plain = answer(LocalLLM(cache_dir=tmp_path / "none"))
    first = LocalLLM(cache_dir=tmp_path)
    first.keep_prefix(prefix)
    assert answer(first) == plain
    states = list((tmp_path / "llm-prefix").glob("*.state"))
    assert len(states) == 1 and states[0].stat().st_size > 0
    written = states[0].stat().st_mtime_ns
    restored = LocalLLM(cache_dir=tmp_path)
    restored.keep_prefix(prefix)
    assert restored.model.n_tokens > 300  # the few-shot prefix is in the context before any question
    assert states[0].stat().st_mtime_ns == written  # restored from the file, not evaluated and saved again
    assert answer(restored) == plain


def test_a_question_likelihood_being_scored_is_waited_for_not_scored_twice(tmp_path):
    """A cold `qa ask` scores the question's likelihood in a warm-up thread while the store opens;
    the question, arriving while that scoring runs, takes its result instead of scoring it again."""
    import threading
    import time

    from qa.answer.answerability import question_prior
    from qa.models.llms import LocalLLM

    llm = LocalLLM(cache_dir=tmp_path)
    llm.model
    scored = []
    real = llm.token_logprobs
    llm.token_logprobs = lambda *args: scored.append(args) or real(*args)  # counts the real model's scorings
    results = []
    with llm._lock:  # the model busy: the warm-up and the question both find the value missing and wait
        threads = [threading.Thread(target=lambda: results.append(question_prior(llm, QUESTION))) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join()
    assert len(scored) == 1 and len(results) == 2 and results[0] == results[1]


def test_the_thread_setting_bounds_prompt_evaluation_too(tmp_path):
    """QA_LLM_THREADS caps the local model's threads for prompts as well as for one-token steps
    (llama-cpp-python's n_threads covers the latter only; prompts are most of the work)."""
    from qa.models.llms import LocalLLM

    one = LocalLLM(threads=1, cache_dir=tmp_path)
    params = one.model.context_params
    assert params.n_threads == 1 and params.n_threads_batch == 1
    prompt = "Evidence: Motegi said Tuesday that scrapping GSOMIA was a complete misjudgment.\nQuestion: " + QUESTION + "\nAnswer:"
    two = LocalLLM(threads=2, cache_dir=tmp_path)
    assert two.model.context_params.n_threads_batch == 2
    assert one.score(prompt, ["Motegi", "Kono"]) == two.score(prompt, ["Motegi", "Kono"])  # the count moves no number
    one.close()
    two.close()
