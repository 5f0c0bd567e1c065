"""A cold `qa ask`'s head start: what answering needs, loaded in threads while the store opens."""

from __future__ import annotations

import threading


def preload_answering(settings, question: str | None = None) -> list[threading.Thread]:
    """Load what answering will need while the caller opens the store and encodes the question,
    so a cold `qa ask` waits for the slowest part rather than their sum: spaCy for the reader in a
    forked process (its ~0.9 s of Python imports and loading would otherwise take turns with the
    store's for the GIL), and in a thread the local model with its primed prefix (its load is C
    code), which then scores the question without evidence (needs no search). Failures are left
    for the question to report."""

    def model():
        try:
            from qa.answer.prompting import few_shot_prefix
            from qa.models.backends import get_llm

            llm = get_llm(settings)
            if getattr(llm, "style", None) == "completion":
                llm.keep_prefix(few_shot_prefix())
                llm.model
                if question is not None:
                    from qa.answer.answerability import question_prior

                    question_prior(llm, question)  # kept by the model for the question's scoring
        except Exception:  # noqa: BLE001 - the question itself reports what is wrong, with context
            pass

    threads = []
    from qa.answer import reader
    from qa.answer.questions import answer_kind

    if question is None or answer_kind(question)[0] == "span":
        reader.use_process()  # before the thread below: a fork copies only this thread
    if settings.llm_backend == "local":
        threads.append(threading.Thread(target=model, name="qa-preload-model", daemon=True))
    for thread in threads:
        thread.start()
    return threads
