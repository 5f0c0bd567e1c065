"""LLM backends, registered by name and chosen in one place (qa/models/backends.py `get_llm`, from settings):

- local: a packaged GGUF run in-process with llama-cpp-python (qa/models/local_models.py): Gemma 3 270M
  (base model, completion-style few-shot prompts; the default) or Qwen2.5-Coder-1.5B-Instruct
  (chat prompts with numbered passages, as a server's chat model gets them), chosen by
  QA_LOCAL_MODEL.
- openai: the OpenAI API (OPENAI_API_KEY), chat-style prompts.
- openai-compatible: any server by base URL + key + model (vLLM, Ollama, llama.cpp server); chat
  by default, or raw completions (QA_LLM_API=completions) for base models.

The openai client is used directly (not llama-index's wrappers) so that timeouts, retries and
error kinds map one-to-one onto clear messages.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import threading
from pathlib import Path
import weakref
from typing import Iterator, Protocol

from qa.errors import BackendError
from qa.lazy import load_once
from qa.models.local_models import DEFAULT, model_path, resolve


class LLM(Protocol):
    name: str
    style: str  # "completion" (a prompt string) or "chat" (a list of messages)

    def check(self) -> None:
        """Raise BackendError when the backend cannot answer (for health checks)."""
        ...

    def stream(
        self, prompt, *, max_tokens: int, stop: list[str] | None = None, logprobs: list[float] | None = None
    ) -> Iterator[str]:
        """Yield text pieces. Backends that can will append each generated token's log-probability
        to `logprobs` (a confidence signal for refusing)."""
        ...


def threads_for(threads: int | None) -> int:
    """The configured llama.cpp thread count, else all cores."""
    return threads or os.cpu_count() or 2


@load_once
def load_cpu_backend() -> str | None:
    """Load llama.cpp's CPU code when it is built as run-time variants, and name the one loaded.

    `make` builds llama.cpp with GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS: its CPU code is one
    library per CPU generation (libggml-cpu-haswell.so, -skylakex, -icelake, -zen4,
    -sapphirerapids, …, installed in site-packages/bin), and ggml loads the best one this CPU runs
    (AVX-512, VNNI, AMX where present; AVX2 or less where not: no "Illegal instruction").
    llama-cpp-python does not load them itself, so this does, once, before the first model.
    Returns the variant's name ("zen4"), "built-in" for a build with its CPU code linked in (an
    older AVX2-only build), or None when llama-cpp-python is not installed."""
    import ctypes

    try:
        import llama_cpp
    except ImportError:
        return None
    package = Path(llama_cpp.__file__).parent
    lib = package / "lib"
    if any(lib.glob("libggml-cpu.so*")):
        return "built-in"
    for folder in (package.parent / "bin", lib):
        if any(folder.glob("libggml-cpu-*.so")):
            # The soname libllama links against: a wheel stores libggml.so and libggml.so.0 as two
            # copies (no symlinks), each with its own backend registry; only libllama's counts.
            ggml = ctypes.CDLL(str(lib / "libggml.so.0") if (lib / "libggml.so.0").exists() else str(lib / "libggml.so"))
            ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
            # QA_LLAMA_CPU_VARIANT=haswell (say) loads that one instead of the best: for comparing
            # variants on one machine; a variant the CPU lacks would die with "Illegal instruction".
            forced = os.environ.get("QA_LLAMA_CPU_VARIANT")
            with _quiet_stderr():
                if forced:
                    ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
                    ggml.ggml_backend_load.restype = ctypes.c_void_p
                    if not ggml.ggml_backend_load(str(folder / f"libggml-cpu-{forced}.so").encode()):
                        raise BackendError(f"QA_LLAMA_CPU_VARIANT: no llama.cpp CPU variant '{forced}' in {folder}")
                else:
                    ggml.ggml_backend_load_all_from_path(str(folder).encode())
            break
    loaded = re.findall(r"libggml-cpu-([\w-]+)\.so", Path("/proc/self/maps").read_text()) if Path("/proc/self/maps").exists() else []
    return loaded[0] if loaded else "unknown"


def cpu_features_in_use() -> str:
    """The CPU features llama.cpp's loaded CPU code uses (its own system-info line), e.g.
    "AVX2 FMA F16C" or "AVX512 AVX512_VNNI AVX512_BF16 AMX_INT8"."""
    import llama_cpp

    load_cpu_backend()

    line = llama_cpp.llama_print_system_info().decode(errors="replace")
    wanted = ("AVX", "AVX2", "AVX_VNNI", "FMA", "F16C", "AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8")
    found = dict(re.findall(r"(\w+) = (\d)", line))
    return " ".join(name for name in wanted if found.get(name) == "1") or line.strip()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C-level writes) for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class LocalLLM:
    """A GGUF in this process. A base model (style "completion") takes few-shot prompts, scores
    candidate answers and keeps its primed prefix in the cache; an instruct model (style "chat")
    takes chat messages through the GGUF's own chat template."""

    def __init__(self, model: str = DEFAULT, threads: int | None = None, context: int | None = None, cache_dir: Path | None = None):
        self.model_name, self.style = resolve(model)
        self.name = "local:gemma-3-270m-q4_k_m" if self.model_name == DEFAULT else f"local:{self.model_name}"
        self.threads = threads_for(threads)
        # Numbered passages (~1,500 characters) plus instructions fit 2k tokens; room for follow-ups.
        self.context = context or (2048 if self.style == "completion" else 4096)
        self.cache_dir = cache_dir
        self.prefix: str | None = None
        self._model = None
        # One llama.cpp context serves one request at a time (re-entrant: log_likelihood holds it
        # across its cache check and its scoring).
        self._lock = threading.RLock()
        self._loading = threading.Lock()  # a warm-up thread and the first question: one load
        self._prefix_tokens = 0  # tokens of the cached few-shot prefix, once loaded
        self._likelihoods: dict[tuple, float] = {}  # recent log_likelihood results (see there)

    @property
    def model(self):
        if self._model is None:
            with self._loading:
                if self._model is None:
                    self._load()
        return self._model

    def prepare(self) -> None:
        """Import llama.cpp and load its CPU code: the Python part of a load (~0.15 s)."""
        import llama_cpp  # noqa: F401

        load_cpu_backend()

    def _load(self) -> None:
        from llama_cpp import Llama

        self.prepare()
        with _quiet_stderr():  # llama.cpp prints load notes from C even with verbose=False
            # Both counts: llama-cpp-python's n_threads covers one-token steps only, and prompts
            # (most of the work) would otherwise take every core whatever QA_LLM_THREADS says.
            model = Llama(model_path=model_path(self.model_name, self.cache_dir), n_ctx=self.context,
                          n_threads=self.threads, n_threads_batch=self.threads, verbose=False)
        if self.prefix:
            self._prime(model, self.prefix)
        self._model = model
        _LOADED.add(self)

    def keep_prefix(self, prefix: str) -> None:
        """Text every prompt starts with (the few-shot examples). When the model loads, its state
        after this text is restored from the cache (6.5 MB, ~10 ms) instead of computed (~1 s on
        2 cores); llama-cpp-python then evaluates only what follows it. (Chat models: llama-cpp-python
        reuses the shared system prompt of consecutive calls by itself.)"""
        if self.style == "completion":
            self.prefix = prefix

    def close(self) -> None:
        """Free the model now (not in the garbage collector at interpreter exit)."""
        with self._lock:
            if self._model is not None:
                self._model.close()
                self._model = None

    def _prime(self, model, prefix: str) -> None:
        import ctypes
        import hashlib

        import llama_cpp

        from qa.cache import default_cache_dir, write_atomically

        tokens = model.tokenize(prefix.encode("utf-8"), special=True)  # as create_completion does
        self._prefix_tokens = len(tokens)
        model_file = Path(model_path(self.model_name, self.cache_dir))
        stat = model_file.stat()
        key = hashlib.sha256(
            f"{model_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{llama_cpp.__version__}:{self.context}:{prefix}".encode()
        ).hexdigest()[:16]
        state_file = Path(self.cache_dir or default_cache_dir()) / "llm-prefix" / f"{key}.state"
        # The llama.cpp context itself: Llama.save_state() would also copy every prefix token's
        # logits (380 MB here), where the KV state alone is 6.5 MB.
        context = model._ctx.ctx
        try:
            data = state_file.read_bytes()
            buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            if llama_cpp.llama_state_set_data(context, buffer, len(data)) == len(data):
                model.input_ids[: len(tokens)] = tokens
                model.n_tokens = len(tokens)
                return
            model.reset()
        except OSError:
            pass
        model.eval(tokens)
        size = llama_cpp.llama_state_get_size(context)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_get_data(context, buffer, size)
        try:
            write_atomically(state_file, bytes(buffer)[:written])
        except OSError:
            pass  # a read-only cache only costs the next start its second

    def score(self, prompt: str, continuations: list[str], max_tokens: int = 12) -> list[tuple[float, float]]:
        """(mean, first-token) log-probability of each continuation right after the prompt (its
        first max_tokens tokens): the prompt is evaluated once (after the cached prefix), then each
        continuation in one batch that keeps the logits of all its positions. Nothing is generated."""
        return [(sum(lp) / len(lp), lp[0]) if lp else (-20.0, -20.0)
                for lp in self.token_logprobs(prompt, continuations, max_tokens)]

    def log_likelihood(self, prompt: str, text: str, max_tokens: int = 48) -> float:
        """The summed log-probability of `text` right after `prompt`. Recent results are kept: a
        prompt is always evaluated the same way (after the prefix, in the same batches), so a
        repeat gives the same number, and a cold `qa ask` can compute the question's likelihood
        without evidence while the store still opens."""
        key = (prompt, text, max_tokens)
        with self._lock:  # checked under the lock: a question waiting on the warm-up's scoring of it reuses it
            if key not in self._likelihoods:
                if len(self._likelihoods) >= 64:
                    self._likelihoods.clear()
                self._likelihoods[key] = sum(self.token_logprobs(prompt, [text], max_tokens)[0])
            return self._likelihoods[key]

    def token_logprobs(self, prompt: str, continuations: list[str], max_tokens: int) -> list[list[float]]:
        """Each continuation's per-token log-probabilities after the prompt (logits are kept only
        where they are read: the vocabulary is 262k wide)."""
        import numpy as np

        results = []
        with self._lock:
            model = self.model
            tokens = model.tokenize(prompt.encode("utf-8"), special=True)
            # Reuse the few-shot prefix the context holds, never more: a prompt evaluated in the
            # same batches gives the same scores every time.
            shared = 0
            held = model.input_ids[: min(model.n_tokens, self._prefix_tokens)]
            while shared < min(len(held), len(tokens) - 1) and held[shared] == tokens[shared]:
                shared += 1
            model.n_tokens = shared
            model.eval(tokens[shared:])
            base = model.n_tokens
            vocab = model.n_vocab()
            last = np.ctypeslib.as_array(model._ctx.get_logits(), shape=(vocab,)).astype(np.float64)
            first_logprobs = last - (last.max() + np.log(np.exp(last - last.max()).sum()))
            for text in continuations:
                ids = model.tokenize((" " + text.strip()).encode("utf-8"), add_bos=False, special=False)[:max_tokens]
                if not ids:
                    results.append([])
                    continue
                total = [float(first_logprobs[ids[0]])]
                if len(ids) > 1:
                    model._ctx.kv_cache_seq_rm(-1, base, -1)
                    model._batch.set_batch(batch=ids[:-1], n_past=base, logits_all=True)
                    model._ctx.decode(model._batch)
                    rows = np.ctypeslib.as_array(model._ctx.get_logits(), shape=(len(ids) - 1, vocab)).astype(np.float64)
                    top = rows.max(axis=1, keepdims=True)
                    logprobs = rows - (top + np.log(np.exp(rows - top).sum(axis=1, keepdims=True)))
                    total += [float(logprobs[i, token]) for i, token in enumerate(ids[1:])]
                results.append(total)
            model._ctx.kv_cache_seq_rm(-1, base, -1)  # the context holds the prompt again, as n_tokens says
        return results

    def check(self) -> None:
        """Reachable: the model file is there (loading it is left to the first question)."""
        try:
            model_path(self.model_name, self.cache_dir)
        except (ImportError, OSError) as exc:
            raise BackendError(f"local model unavailable ({exc})") from None

    def stream(
        self, prompt, *, max_tokens: int, stop: list[str] | None = None, logprobs: list[float] | None = None
    ) -> Iterator[str]:
        if self.style == "chat":
            with self._lock:
                for part in self.model.create_chat_completion(
                    messages=prompt, max_tokens=max_tokens, stop=stop, temperature=0.0, stream=True
                ):
                    text = part["choices"][0]["delta"].get("content")
                    if text:
                        yield text
            return
        processors = None
        if logprobs is not None:
            import numpy as np
            from llama_cpp import LogitsProcessorList

            def record(_input_ids, scores):
                # Greedy decoding takes the arg-max, so its log-softmax is the chosen token's logprob.
                # (llama.cpp's own logprobs need logits for every prompt token: far too slow here.)
                top = float(np.max(scores))
                logprobs.append(-float(np.log(np.sum(np.exp(scores - top)))))
                return scores

            processors = LogitsProcessorList([record])
        with self._lock:
            for part in self.model.create_completion(
                prompt, max_tokens=max_tokens, stop=stop, temperature=0.0, stream=True, logits_processor=processors
            ):
                yield part["choices"][0]["text"]


class OpenAILLM:
    def __init__(self, model: str, base_url: str | None, api_key: str | None, style: str, timeout: float, retries: int):
        from openai import OpenAI

        # OPENAI_API_KEY belongs to OpenAI: it is never sent to another base URL.
        key = api_key or (os.environ.get("OPENAI_API_KEY") if base_url is None else None)
        if not key and not base_url:
            raise BackendError("OPENAI_API_KEY (or QA_LLM_API_KEY) is not set")
        self.client = OpenAI(api_key=key or "unused", base_url=base_url, timeout=timeout, max_retries=retries)
        self.model = model
        self.style = style
        self.timeout = timeout
        self.name = f"{'openai-compatible' if base_url else 'openai'}:{model}"

    def check(self) -> None:
        """Reachable: the server lists its models (with the key, within the timeout)."""
        import openai

        where = str(self.client.base_url).rstrip("/")
        try:
            self.client.with_options(timeout=min(self.timeout, 5.0), max_retries=0).models.list()
        except openai.AuthenticationError:
            raise BackendError(f"LLM server at {where} rejected the API key") from None
        except (openai.APIConnectionError, openai.APITimeoutError):
            raise BackendError(f"LLM server unreachable at {where}") from None
        except openai.APIStatusError as exc:
            raise BackendError(f"LLM server at {where} answered HTTP {exc.status_code}") from None

    def stream(
        self, prompt, *, max_tokens: int, stop: list[str] | None = None, logprobs: list[float] | None = None
    ) -> Iterator[str]:
        import openai

        where = str(self.client.base_url).rstrip("/")
        try:
            if self.style == "chat":
                response = self.client.chat.completions.create(
                    model=self.model, messages=prompt, max_tokens=max_tokens, stop=stop, temperature=0, stream=True
                )
                for event in response:
                    if event.choices and event.choices[0].delta.content:
                        yield event.choices[0].delta.content
            else:
                response = self.client.completions.create(
                    model=self.model, prompt=prompt, max_tokens=max_tokens, stop=stop, temperature=0, stream=True
                )
                for event in response:
                    if event.choices and event.choices[0].text:
                        yield event.choices[0].text
        except openai.AuthenticationError:
            raise BackendError(f"LLM server at {where} rejected the API key") from None
        except openai.APITimeoutError:
            raise BackendError(f"LLM server at {where} did not answer within {self.timeout:g} s") from None
        except openai.APIConnectionError:
            raise BackendError(f"LLM server unreachable at {where}") from None
        except openai.NotFoundError:
            raise BackendError(f"LLM server at {where} has no model '{self.model}'") from None
        except openai.APIStatusError as exc:
            raise BackendError(f"LLM server at {where} answered HTTP {exc.status_code}") from None


_LOADED: "weakref.WeakSet[LocalLLM]" = weakref.WeakSet()  # local models holding a llama.cpp context


def close_all() -> None:
    """Free every loaded local model; registered to run at exit, where llama.cpp's own destructor
    would fail once the interpreter has torn its modules down ("Exception ignored in: Llama.__del__")."""
    for llm in list(_LOADED):
        llm.close()


atexit.register(close_all)
