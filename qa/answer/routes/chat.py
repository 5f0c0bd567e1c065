"""Answers through a chat model (OpenAI, any OpenAI-compatible server, a local instruct model):
numbered evidence, short answers with [n], grounding."""

from __future__ import annotations

import re
import time

from qa.text.words import content_lemmas, lemma_coverage
from qa.answer.metrics import normalise_answer
from qa.retrieve.hybrid import Sentence
from qa.answer.answerability import (answerability, chat_quote_threshold, chat_threshold, evidence_signals, model_signals,
                                     speaker_quoted)
from qa.answer.grounding import CITATION_REPAIR_MARGIN, _FILLER, _is_refusal, unsupported_facts
from qa.answer.prompting import few_shot_prefix, pick_evidence
from qa.answer.types import Answer, Citation, NOT_FOUND


class ChatRoute:
    """Engine methods of this route (the Engine class mixes them in: they share its settings,
    model and evidence)."""

    @property
    def scorer(self):
        """The model that scores questions and candidates for the answer/refuse decision: the
        engine's own when it can (the local base model), else — for chat models — the packaged
        Gemma in this process when it is installed (~0.3 s a question: its question likelihood
        after the evidence tells out-of-library questions apart far better than retrieval scores),
        else None (the evidence rule decides alone)."""
        if hasattr(self.llm, "score") and self.llm.style == "completion":
            return self.llm
        if self._scorer is None:
            from qa.errors import BackendError
            from qa.models.backends import get_llm

            settings = self.settings.model_copy(update={"llm_backend": "local", "local_model": "gemma-3-270m"})
            try:
                scorer = get_llm(settings)
                scorer.check()
                scorer.keep_prefix(few_shot_prefix())
                self._scorer = scorer
            except (BackendError, ImportError):
                self._scorer = False
        return self._scorer or None

    # --- chat models -------------------------------------------------------------------------
    def _generate_chat(self, question: str, asked: str, kind: str, ranked: list[Sentence], timings: dict, t: float):
        """The best passages within QA_CHAT_CONTEXT_CHARS, sentences numbered; the model answers
        and cites them as [n], or says the articles don't say (kept). Refused before the model only
        where the evidence shows the question is about something the library does not hold (the
        "chat" threshold of the evidence rule, fitted with the chat model in the loop). The
        model's text is kept when grounded: no name or number the passages lack, and enough of
        its words in what it cites; else the best sentences are quoted, if they speak of what was
        asked."""
        articles = pick_evidence(ranked, self.settings.chat_context_chars)
        evidence = [s for group in articles for s in group]
        signals = evidence_signals(question, ranked)
        scorer = self.scorer
        rule = "local" if scorer is not None else "evidence"
        # The best sentences quoted: what the scorer reads, and the answer when the model's own
        # refusal or ungrounded reply gives way to them.
        quote = self._quote(asked, ranked, signals) if ranked else None
        if scorer is not None and quote is not None:
            signals |= model_signals(scorer, question, quote.text)
        if kind == "span" and ranked:
            self._read(question, ranked, signals, scoring=scorer is not None, scorer=scorer)  # signals only; the model answers
        signals["quote_question"] = float(kind == "quote")
        signals["answerability"] = answerability(signals, rule, self.encoder)
        if not evidence or (signals["answerability"] < chat_threshold(self.settings.min_answerability_chat, rule, self.encoder)
                            and not speaker_quoted(question, ranked, signals)):
            yield NOT_FOUND
            yield self.not_found(ranked, signals)
            return
        parts: list[str] = []
        tokens = self.llm.stream(self.build_prompt(question, articles), max_tokens=160, stop=["\n"])
        try:
            for token in tokens:
                timings.setdefault("first_token", time.perf_counter() - t)
                parts.append(token)
                yield token
                said = "".join(parts).strip()
                if said.endswith(".") and _is_refusal(said):
                    break  # small models repeat a refusal line until max_tokens (~15 s on 2 cores)
        finally:
            tokens.close()
        raw = "".join(parts).strip()
        if _is_refusal(raw):
            signals["model_refused"] = 1.0
            answer = self._over_refusal(quote, ranked, signals, rule)
        else:
            answer = self._ground_chat(question, raw, evidence, signals)
            signals["model_kept"] = float(answer is not None)
            if answer is None:  # words the evidence does not bear out: quote it, if it speaks of what was asked
                on_topic = bool(ranked) and lemma_coverage(asked, ranked[0].text, skip_names=True) > 0
                answer = quote if on_topic else self.not_found(ranked, signals)
            if answer.kind == "span" and kind == "quote":
                answer.kind = "quote"  # why / how / what-was-said: the model's sentences, citing the quotes
        answer.signals.setdefault("model_answer", raw)
        answer.tokens = len(parts)
        yield answer

    def _over_refusal(self, quote: Answer, ranked: list[Sentence], signals: dict, rule: str) -> Answer:
        """After the model's "The articles don't say.": the best sentences quoted when the evidence
        scores at or above the fitted quote threshold (a 1.5B reader misses answers worded unlike
        the question that the best sentence holds), else the refusal. The quote it would have
        given is kept in the signals either way, so the threshold can be fitted from runs."""
        signals["refusal_quote"] = [c.quote for c in quote.citations]
        if signals["answerability"] >= chat_quote_threshold(self.settings.min_answerability_quote_chat, rule):
            signals["quoted_over_refusal"] = 1.0
            return quote
        return self.not_found(ranked, signals)

    def _ground_chat(self, question: str, raw: str, evidence: list[Sentence], signals: dict) -> Answer | None:
        """The model's answer with its [n] citations, or None when it names a person, place or
        number that no passage shown holds (an invention), when too little of its wording is in
        the passages it cites (lemmas: a paraphrase keeps its content words' roots), or when it
        only repeats the question."""
        cited_numbers = sorted({int(n) for n in re.findall(r"\[(\d+)\]", raw) if 0 < int(n) <= len(evidence)})
        plain = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]", "", raw).strip()
        said = normalise_answer(plain)
        # How well each sentence says this answer to this question: the share of the answer it
        # holds (all of it when word for word: "14", "Terminal C") plus the share of the question.
        support = [(1.0 if said and said in normalise_answer(e.text) else lemma_coverage(plain, e.text))
                   + lemma_coverage(question, e.text) for e in evidence]
        best = max(range(len(evidence)), key=lambda i: support[i])
        if not cited_numbers or max(support[n - 1] for n in cited_numbers) + CITATION_REPAIR_MARGIN < support[best]:
            # Uncited, or citing a sentence that holds far less of the answer than another: small
            # models often give a neighbour's number. The sentence that says it is cited instead.
            signals["citation_repaired"] = 1.0
            cited_numbers = [best + 1]
            raw = f"{plain} [{best + 1}]"
        cited = [evidence[n - 1] for n in cited_numbers]
        # What the cited sentences' passages say: a pronoun's referent sits in the sentence before.
        context = " ".join(s.hit.text for s in {id(s.hit): s for s in cited}.values())
        unsupported = unsupported_facts(plain, " ".join([question, context] + [e.text for e in evidence]))
        score = lemma_coverage(plain, context + " " + " ".join(e.text for e in cited)) if content_lemmas(plain) else 1.0
        signals |= {"grounded": score, "unsupported": ", ".join(unsupported)}
        if unsupported or score < self.settings.min_grounded or set(content_lemmas(plain)) - _FILLER <= set(content_lemmas(question)):
            return None
        return Answer(raw, [Citation.of(n, e) for n, e in zip(cited_numbers, cited)], score, kind="span", signals=signals)
