"""A local model's speed on this machine (prompt and generation tokens per second), measured once
and cached per model, CPU, llama.cpp build and thread count; and the "auto" choice made from it.

Rule for QA_LOCAL_MODEL=auto: the instruct model (qwen2.5-coder-1.5b) when its estimated answer
time — ANSWER_PROMPT_TOKENS read plus ANSWER_TOKENS written, at the measured speeds — is within
QA_LOCAL_MODEL_BUDGET_S (6 s by default); else Gemma 3 270M. Where the instruct model's parts are
not installed, Gemma."""

from __future__ import annotations

import json
import time
from pathlib import Path

from qa.config import Settings
from qa.errors import BackendError

# A chat answer here: ~1,500 characters of numbered passages plus the instructions (~600 tokens
# with Qwen's tokenizer), and a short cited answer (~30 tokens).
ANSWER_PROMPT_TOKENS = 600
ANSWER_TOKENS = 30
_PROBE_TEXT = ("The foreign ministers met on Tuesday and agreed to keep talking about the intelligence-sharing pact, "
               "officials said, while markets waited for news of the trade talks. ") * 12


def _speed_file(settings: Settings) -> Path:
    from qa.cache import default_cache_dir

    return Path(settings.cache_dir or default_cache_dir()) / "llm-speed.json"


def _key(model: str, threads: int) -> str:
    import llama_cpp

    from qa.models.encoders import cpu_flags
    from qa.models.llms import load_cpu_backend

    variant = load_cpu_backend()  # an AVX2-only build and the run-time variants measure apart
    return f"{model}|{llama_cpp.__version__}|{variant}|{threads}|{' '.join(sorted(cpu_flags()))}"


def cached_speed(settings: Settings, model: str) -> dict | None:
    """The figures measured here for this model and build, or None (nothing is measured)."""
    from qa.models.llms import threads_for

    try:
        return json.loads(_speed_file(settings).read_text()).get(_key(model, threads_for(settings.llm_threads)))
    except (OSError, ValueError, ImportError):
        return None


def measure(settings: Settings, model: str) -> dict:
    """Load the model, time reading a ~300-token prompt and writing 32 tokens (after one warm-up),
    cache and return {prompt_tps, generate_tps, answer_s}."""
    from qa.cache import write_atomically
    from qa.models.llms import LocalLLM, cpu_features_in_use, threads_for

    llm = LocalLLM(model, threads=settings.llm_threads, cache_dir=settings.cache_dir)
    engine = llm.model
    tokens = engine.tokenize(_PROBE_TEXT.encode(), add_bos=True)[:300]
    engine.reset()
    engine.eval(tokens[:16])  # warm-up: first-call allocations are not reading speed
    engine.reset()
    started = time.perf_counter()
    engine.eval(tokens)
    prompt_s = time.perf_counter() - started
    started = time.perf_counter()
    generated = 0
    for _ in engine.generate(tokens, temp=0.0):  # the evaluated prompt is reused, not read again
        generated += 1
        if generated == 32:
            break
    generate_s = time.perf_counter() - started
    figures = {"prompt_tps": round(len(tokens) / prompt_s, 1), "generate_tps": round(generated / generate_s, 1)}
    figures["answer_s"] = round(ANSWER_PROMPT_TOKENS / figures["prompt_tps"] + ANSWER_TOKENS / figures["generate_tps"], 2)
    figures["variant"] = cpu_features_in_use()
    path = _speed_file(settings)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known[_key(model, threads_for(settings.llm_threads))] = figures
    try:
        write_atomically(path, json.dumps(known, indent=1))
    except OSError:
        pass
    llm.close()
    return figures


def choose(settings: Settings) -> str:
    """QA_LOCAL_MODEL=auto: the instruct model if it answers within the budget here, else Gemma."""
    from qa.models.local_models import DEFAULT, INSTRUCT, MODELS, _part_files

    try:
        _part_files(MODELS[INSTRUCT])
    except BackendError:
        return DEFAULT
    figures = cached_speed(settings, INSTRUCT) or measure(settings, INSTRUCT)
    return INSTRUCT if figures["answer_s"] <= settings.local_model_budget_s else DEFAULT
