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


def preload_answering(settings, question: str | None = None) -> threading.Thread:
    """Load, in a thread, what answering will need — the local model with its primed prefix,
    spaCy for the reader, the lemma tables — while the caller opens the store and encodes the
    question: a cold `qa ask` then waits for the slowest of them rather than their sum (the
    model load and the store's imports overlap). Failures are left for the question to report."""

    def work():
        try:
            from . import reader
            from .engine import few_shot_prefix
            from .questions import answer_kind, lemma

            if settings.llm_backend == "local":
                from .llms import get_llm

                llm = get_llm(settings)
                if getattr(llm, "style", None) == "completion":
                    llm.keep_prefix(few_shot_prefix())
                    llm.model
            if question is None or answer_kind(question)[0] == "span":
                reader.pipeline()
            lemma("warm")
        except Exception:  # noqa: BLE001 - the question itself reports what is wrong, with context
            pass

    thread = threading.Thread(target=work, name="qa-preload", daemon=True)
    thread.start()
    return thread
