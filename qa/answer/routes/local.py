"""Answers through the local base model: the answer/refuse decision from the evidence and the
model's scores, then a span or a quote."""

from __future__ import annotations

import time

from qa.answer import reader
from qa.retrieve.hybrid import Sentence
from qa.answer.answerability import answerability, evidence_signals, model_signals, speaker_quoted, threshold


class LocalRoute:
    """Engine methods of this route (the Engine class mixes them in: they share its settings,
    model and evidence)."""

    # --- the small local model ---------------------------------------------------------------
    def _generate_local(self, question: str, asked: str, kind: str, ranked: list[Sentence], timings: dict, t: float):
        """Decide from the evidence and the reader whether to answer; then answer with the
        reader's span, or quote the best evidence sentence. `asked`: what was searched (a
        follow-up with the previous question)."""
        signals = evidence_signals(question, ranked)
        rule = "local" if hasattr(self.llm, "score") else "evidence"
        if kind == "span" and ranked:
            reader.prefetch(question, ranked)  # its spaCy work overlaps the model's scoring below
        quote = self._quote(asked, ranked, signals) if ranked else None
        if rule == "local" and quote is not None:
            signals |= model_signals(self.llm, question, quote.text)
        generated, tokens = None, 0
        if kind == "span" and ranked and rule == "evidence":
            # A base model behind a server cannot score candidates: it answers from the best
            # sentence, and its words pick among that sentence's candidates.
            parts: list[str] = []
            for token in self.llm.stream(self.local_prompt(question, ranked[0].text), max_tokens=32,
                                         stop=["\n", "Question:", "Evidence:", "Answer:"]):
                timings.setdefault("first_token", time.perf_counter() - t)
                parts.append(token)
                yield token
            generated, tokens = "".join(parts).strip(), len(parts)
        span = self._read(question, ranked, signals, scoring=rule == "local", generated=generated) if kind == "span" and ranked else None
        signals["quote_question"] = float(kind == "quote")
        signals["answerability"] = answerability(signals, rule, self.encoder)
        # What would be answered: kept with a refusal so evaluations can draw the answer/refuse curve.
        signals["candidate"] = span.text if span is not None else ranked[0].text if ranked else ""
        if not ranked or (signals["answerability"] < threshold(self.settings.min_answerability, rule, self.encoder)
                          and not speaker_quoted(question, ranked, signals)):
            answer = self.not_found(ranked, signals)
        elif span is not None:
            answer = span
            answer.signals = signals | {"grounded": span.grounded}
        else:
            answer = quote
        timings.setdefault("first_token", time.perf_counter() - t)
        if generated is None:
            yield answer.text
        answer.tokens = tokens
        yield answer
