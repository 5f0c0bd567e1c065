"""A cold `qa ask`'s head start: what answering needs, loaded in threads while the store opens."""

from __future__ import annotations

import threading


def preload_answering(settings, question: str | None = None) -> list[threading.Thread]:
    """Load, in threads, what answering will need — the local model with its primed prefix, and
    spaCy for the reader — while the caller opens the store and encodes the question: a cold
    `qa ask` then waits for the slowest of them rather than their sum. Two threads: the model
    loads in C (the GIL is free for spaCy's Python meanwhile), and spaCy is done before the
    model's first scoring wants both cores. Failures are left for the question to report."""

    def model():
        try:
            from qa.answer.prompting import few_shot_prefix
            from qa.models.backends import get_llm

            llm = get_llm(settings)
            if getattr(llm, "style", None) == "completion":
                llm.keep_prefix(few_shot_prefix())
                llm.model
        except Exception:  # noqa: BLE001 - the question itself reports what is wrong, with context
            pass

    def spacy():
        try:
            from qa.answer import reader
            from qa.answer.questions import answer_kind

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
