"""Loaders that run once per process, whichever thread asks first: a warm-up thread and the first
question may both want spaCy or the local model (lru_cache alone lets two threads that miss at
once both load)."""

from __future__ import annotations

import functools
import threading


def load_once(loader):
    """`loader()` is called at most once; every caller gets its result (a failure is not kept:
    the next call tries again)."""
    lock = threading.Lock()
    held: list = []

    @functools.wraps(loader)
    def get():
        if not held:
            with lock:
                if not held:
                    held.append(loader())
        return held[0]

    return get


def preload_answering(settings, question: str | None = None) -> list[threading.Thread]:
    """Load, in threads, what answering will need — the local model with its primed prefix, and
    spaCy for the reader — while the caller opens the store and encodes the question: a cold
    `qa ask` then waits for the slowest of them rather than their sum. Two threads: the model
    loads in C (the GIL is free for spaCy's Python meanwhile), and spaCy is done before the
    model's first scoring wants both cores. Failures are left for the question to report."""

    def model():
        try:
            from .engine import few_shot_prefix
            from .llms import get_llm

            llm = get_llm(settings)
            if getattr(llm, "style", None) == "completion":
                llm.keep_prefix(few_shot_prefix())
                llm.model
        except Exception:  # noqa: BLE001 - the question itself reports what is wrong, with context
            pass

    def spacy():
        try:
            from . import reader
            from .questions import answer_kind

            if question is None or answer_kind(question)[0] == "span":
                reader.pipeline()
        except Exception:  # noqa: BLE001
            pass

    threads = [threading.Thread(target=spacy, name="qa-preload-spacy", daemon=True)]
    if settings.llm_backend == "local":
        threads.append(threading.Thread(target=model, name="qa-preload-model", daemon=True))
    for thread in threads:
        thread.start()
    return threads
