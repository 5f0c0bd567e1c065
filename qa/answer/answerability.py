"""Whether the articles answer: signals from the evidence and the local model, and the fitted rules
(answerability.json)."""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from qa.text.words import lemma_coverage, name_in, question_names
from qa.retrieve.ranking import speaker_of, spoken_by
from qa.retrieve.hybrid import Sentence
from qa.answer.prompting import prompt_template


ANSWERABILITY = Path(__file__).resolve().parent / "answerability.json"


# --- answerability: decided from the evidence ---------------------------------------------------
def evidence_signals(question: str, ranked: list[Sentence]) -> dict:
    """What the retrieved evidence says about whether the articles answer the question."""
    if not ranked:
        return {"sentence_score": 0.0, "similarity": 0.0, "chunk_score": 0.0, "lemma_coverage": 0.0, "asked_coverage": 0.0,
                "idf_coverage": 0.0, "missing_idf": 10.0, "missing_names": 1.0, "agreement": 0.0, "margin": 0.0,
                "rank_score": 0.0}
    top = ranked[0]
    context = top.hit.text
    ranks = top.hit.ranks or {}
    return {
        "sentence_score": top.score,
        "similarity": top.similarity,
        "chunk_score": top.hit.score,
        "lemma_coverage": lemma_coverage(question, top.text),
        # How much of what is asked beyond its names: a sentence that only names the subject
        # ("the population of Tokyo" from one that mentions Tokyo) answers nothing.
        "asked_coverage": lemma_coverage(question, top.text, skip_names=True),
        "idf_coverage": top.idf_coverage,
        # Names and numbers of the question that its chunk lacks: SQuAD 2.0's unanswerable
        # questions often swap in another name or year.
        "missing_idf": top.missing_idf,
        "missing_names": float(sum(not name_in(name, context) for name in question_names(question))),
        # How many of the three retrievers (vector, BM25, best sentence) put its chunk in their top 3.
        "agreement": float(sum(1 for r in ranks.values() if r <= 3)),
        "margin": top.score - ranked[1].score if len(ranked) > 1 else top.score,
        # The fitted evidence ranking's own score of it (story, neighbours, type cue and all).
        "rank_score": top.rank_score or 0.0,
    }


def model_signals(llm, question: str, evidence: str) -> dict:
    """How much likelier the local model finds the question after the evidence (the quote the
    answer would give) than after none (log-probabilities summed over the question's tokens, and
    per word): evidence that answers a question makes it predictable. Out-of-library questions are
    told from answerable natural ones by it better than by any retrieval score (AUC 0.860 with the
    quote, 0.853 with the best sentence alone, vs 0.770 for its similarity, on 500 + 200 NewsQA
    questions kept apart from the benchmark's). Two scorings of the question, ~0.2 s on 2 cores."""
    question = " ".join(question.split())
    pmi = llm.log_likelihood(_answer_head().format(evidence=" ".join(evidence.split())), question) - question_prior(llm, question)
    return {"question_pmi": pmi, "question_pmi_per_word": pmi / max(1, len(question.split()))}


def _answer_head() -> str:
    return prompt_template("local_answer.txt").split("{question}")[0].rstrip()


def question_prior(llm, question: str) -> float:
    """The question's log-likelihood after no evidence: model_signals' baseline. It needs no
    search, so a cold `qa ask` computes it as soon as the model is loaded (the model keeps it)."""
    return llm.log_likelihood(_answer_head().format(evidence=""), " ".join(question.split()))


@lru_cache(maxsize=1)
def answerability_rules() -> dict:
    """Logistic weights over the signals, by rule: "local" (evidence + the reader's best candidate
    as the local model scores it) and "evidence" (evidence + the reader without a model, for chat
    models and servers that cannot score). Fitted by evals/reader_fit.py. The top-level rules
    serve encoders whose vectors agree with fp32; an encoder that does not (onnx-int8) shifts the
    similarity signals a little and has its own rules under "encoders"."""
    return json.loads(ANSWERABILITY.read_text(encoding="utf-8"))


def _rule(rule_name: str, encoder: str | None) -> dict:
    rules = answerability_rules()
    return rules.get("encoders", {}).get(encoder, rules)[rule_name]


def answerability(signals: dict, rule_name: str, encoder: str | None = None) -> float:
    """Probability-like score that the articles answer the question (a fitted rule)."""
    rule = _rule(rule_name, encoder)
    z = rule["bias"] + sum(w * float(signals.get(name, 0.0)) for name, w in rule["weights"].items())
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def threshold(setting: float | None, rule_name: str, encoder: str | None = None) -> float:
    """The configured threshold, else the one chosen with the rule."""
    return _rule(rule_name, encoder)["threshold"] if setting is None else setting


def chat_threshold(setting: float | None, rule_name: str, encoder: str | None = None) -> float:
    """Below this score of the rule a chat model is not asked: the evidence shows the question is
    about something the library does not hold. The configured value, else the one fitted with a
    chat model answering the rest (answerability.json "chat", evals/chat_fit.py), else the rule's own."""
    if setting is not None:
        return setting
    fitted = _chat_fit(rule_name)
    return fitted["threshold"] if fitted else threshold(None, rule_name, encoder)


def chat_quote_threshold(setting: float | None, rule_name: str) -> float:
    """At or above this score of the rule, a chat model's refusal gives way to the best sentences
    quoted: the configured value, else the one fitted with the gate (answerability.json "chat",
    evals/chat_fit.py), else never (a refusal stands)."""
    if setting is not None:
        return setting
    return _chat_fit(rule_name).get("quote_threshold", float("inf"))


def _chat_fit(rule_name: str) -> dict:
    """The chat path's thresholds fitted for this rule (answerability.json "chat"), or {}."""
    return answerability_rules().get("chat", {}).get(rule_name) or {}


def speaker_quoted(question: str, ranked: list[Sentence], signals: dict) -> bool:
    """"What did Motegi say?" and the best sentence is Motegi speaking: that answers it, whatever
    the fitted rule makes of a short question's low similarity (it was fitted without this
    signal). Recorded in the signals."""
    speaker = speaker_of(question)
    signals["speaker_quoted"] = float(bool(speaker and ranked and spoken_by(speaker, ranked[0].text)))
    return bool(signals["speaker_quoted"])
