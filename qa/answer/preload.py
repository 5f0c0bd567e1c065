"""A cold `qa ask`'s head start: what answering needs, loaded in threads while the store opens."""

from __future__ import annotations

import threading

_STARTED: set = set()  # (model, question) pairs a warm-up thread was started for


def preload_answering(settings, question: str | None = None) -> list[threading.Thread]:
    """Load what answering will need while the caller opens the store and encodes the question,
    so a cold `qa ask` waits for the slowest part rather than their sum: spaCy for the reader in a
    forked process (its ~0.9 s of Python imports and loading would otherwise take turns with the
    store's for the GIL), and in a thread the local model with its primed prefix (its load is C
    code), which then scores the question without evidence (needs no search). Failures are left
    for the question to report."""
    preload_reader(question)  # first: a fork copies only this thread
    llm = _local_model(settings)
    if llm is None or (llm, question) in _STARTED:
        return []
    _STARTED.add((llm, question))
    from qa.answer.answerability import question_prior

    def model():
        try:
            llm.model
            if question is not None:
                question_prior(llm, question)  # kept by the model for the question's scoring
        except Exception:  # noqa: BLE001 - the question itself reports what is wrong, with context
            pass

    thread = threading.Thread(target=model, name="qa-preload-model", daemon=True)
    thread.start()
    return [thread]


def _local_model(settings):
    """The local base model, its prefix set and llama.cpp imported, or None (another backend, a
    chat model, or a failure the question will report). The imports run here, not in the thread:
    two threads importing only take turns for the GIL, and the thread's load (C code) then
    starts at once."""
    if settings.llm_backend != "local":
        return None
    try:
        from qa.answer.prompting import few_shot_prefix
        from qa.models.backends import get_llm

        llm = get_llm(settings)
        if getattr(llm, "style", None) != "completion":
            return None
        llm.keep_prefix(few_shot_prefix())
        llm.prepare()
        return llm
    except Exception:  # noqa: BLE001
        return None


def preload_reader(question: str | None) -> None:
    """Start the reader's spaCy in a forked process, for a question whose answer is a span (or any
    question, where it is not known yet). Call it before starting threads; a second call is free."""
    from qa.answer import reader
    from qa.answer.questions import answer_kind

    if question is None or answer_kind(question)[0] == "span":
        reader.use_process()
