"""The one place an LLM backend is chosen (local GGUF, OpenAI, any OpenAI-compatible server), and
a visitor's own choice made safe (server secrets only to servers the operator configured)."""

from __future__ import annotations

import threading

from qa.config import Settings
from qa.errors import BackendError
from qa.models.llms import LLM, LocalLLM, OpenAILLM


BACKENDS = ("local", "openai", "openai-compatible")


def normalise_url(url: str) -> str:
    return url.strip().rstrip("/")


def for_visitor(server: Settings, backend: str | None = None, model: str | None = None, base_url: str | None = None) -> Settings:
    """The server's settings with one visitor's LLM choices applied, for that visitor alone.

    The server's API key goes only to the base URL the operator configured (QA_LLM_BASE_URL). A
    base URL typed by a visitor must be listed in QA_ALLOWED_BASE_URLS, and gets no key."""
    backend = backend or server.llm_backend
    if backend not in BACKENDS:
        raise BackendError(f"unknown LLM backend '{backend}' (choose {', '.join(BACKENDS)})")
    update: dict = {"llm_backend": backend, "llm_model": model or server.llm_model}
    typed = normalise_url(base_url) if base_url and base_url.strip() else None
    configured = normalise_url(server.llm_base_url) if server.llm_base_url else None
    if backend == "openai-compatible" and typed and typed != configured:
        allowed = {normalise_url(u) for u in server.allowed_base_urls.split(",") if u.strip()}
        if typed not in allowed:
            raise BackendError(f"base URL {typed} is not allowed on this server (the operator lists allowed ones in QA_ALLOWED_BASE_URLS)")
        update |= {"llm_base_url": typed, "llm_api_key": None}
    return server.model_copy(update=update)


_CACHE: dict[tuple, LLM] = {}
_CACHE_LOCK = threading.Lock()  # a warm-up thread and the first question may ask at once


def local_model(settings: Settings) -> str:
    """QA_LOCAL_MODEL, with "auto" settled by this machine's measured speed (qa/models/llm_speed.py)."""
    if settings.local_model == "auto":
        from qa.models.llm_speed import choose

        return choose(settings)
    return settings.local_model


def get_llm(settings: Settings) -> LLM:
    """The one place a backend is chosen. Local models are loaded once per process."""
    backend = settings.llm_backend
    if backend not in BACKENDS:
        raise BackendError(f"unknown LLM backend '{backend}' (choose {', '.join(BACKENDS)})")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    cache_key = (backend, settings.llm_model, settings.llm_base_url, settings.llm_api, key, settings.cache_dir,
                 settings.local_model if backend == "local" else None)
    with _CACHE_LOCK:
        if cache_key in _CACHE:
            return _CACHE[cache_key]
        if backend == "local":
            llm: LLM = LocalLLM(local_model(settings), threads=settings.llm_threads, cache_dir=settings.cache_dir)
        else:
            if backend == "openai-compatible" and not settings.llm_base_url:
                raise BackendError("the openai-compatible backend needs a base URL (QA_LLM_BASE_URL or --base-url)")
            llm = OpenAILLM(
                model=settings.llm_model or ("gpt-4o-mini" if backend == "openai" else "default"),
                base_url=settings.llm_base_url if backend == "openai-compatible" else None,
                api_key=key,
                style=settings.llm_api or "chat",
                timeout=settings.llm_timeout,
                retries=settings.llm_retries,
            )
        _CACHE[cache_key] = llm
        return llm
