"""The answer chain: condense → classify → retrieve sentences → decide from the evidence whether
the articles answer → answer in the form the question wants → ground (citations, groundedness).

Answer kinds:
- span: a short answer copied from a cited sentence (who / when / where / how many / what is);
- quote: the cited sentence itself, verbatim, with the next best of the same story when it too
  speaks of what is asked (why / how / what someone said or did, or a span that fails its
  grounding check while the sentence clearly answers);
- fact: a question about the article itself (author, date, dateline, headline, source, URL),
  answered from the stored article record;
- summary: a whole article summarised (tl;dr, summary, key points): its lede and most central
  sentences, cited (a chat model writes them up with [n] citations);
- timeline: the news on a topic over time ("What's the latest on X?"), or the articles of the
  dates a question names: matching articles newest first, each with its date, headline and the
  sentence that matters;
- not_found: "The articles don't say.", with the closest passages shown as such.

Short answers come from the reader (qa/reader.py): typed candidates (entities, noun phrases) of
the best evidence sentences, ranked by a rule fitted on natural news questions, with the local
model scoring the best few as answers (log-likelihood after its few-shot prompt, not free
generation); without a candidate sure enough, the best sentence is quoted. Chat models get numbered
source sentences and cite them as [n]. Whether to answer at all is decided from the evidence
(scores, retriever agreement, lemma coverage of the question) and the reader's best candidate, by
a rule fitted on natural questions (NewsQA), questions about stories left out of the library, and
SQuAD 2.0 (evals/reader_fit.py writes qa/answerability.json)."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Protocol

from .chunking import sentence_spans
from .config import Settings
from . import reader
from .dates import DateRange, has_date, read_dates
from .errors import InputError
from .overview import TIMELINE_ARTICLES, lede_index, newest_first, on_topic, summary_picks
from .questions import (
    LEADING_PRONOUN_RE, answer_kind, check_question, content_lemmas, has_pronoun, lemma_coverage, name_in, question_names, rewrite_follow_up,
    timeline_topic,
)
from .ranking import rank_evidence, speaker_of, spoken_by
from .metrics import normalise_answer
from .retrieval import Filters, Sentence, date_ord, sentences_within, tokenize

NOT_FOUND = "The articles don't say."
# A chat model's citation gives way to another sentence whose share of the answer's words plus
# share of the question's is this much higher (see Engine._ground_chat).
CITATION_REPAIR_MARGIN = 0.25
KINDS = ("span", "quote", "fact", "summary", "timeline", "not_found")
PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
ANSWERABILITY = Path(__file__).resolve().parent / "answerability.json"
_REFUSALS = {"", "unanswerable", "unknown", "none", "n/a", "no answer", "not stated", "the articles don't say."}
FACT_LABELS = {
    "author": "author", "published": "publication date", "dateline": "dateline", "title": "headline",
    "source": "source", "url": "URL",
}


class EvidenceSource(Protocol):
    """What the engine needs from a library: ranked sentences for a question, the article
    records (for questions about an article itself, and dates), and one article's sentences with
    their vectors (for summaries)."""

    def sentences(self, question: str, filters=None, pool: int | None = None) -> list[Sentence]: ...

    def articles(self) -> list: ...

    def article_sentences(self, article_id: str) -> tuple: ...


@dataclass
class Citation:
    n: int
    title: str
    article_id: str
    quote: str
    start: int
    end: int
    published: str | None = None
    field: str | None = None  # for a fact answer: the article record field it comes from

    @classmethod
    def of(cls, n: int, sentence: Sentence) -> "Citation":
        return cls(n, sentence.hit.title, sentence.hit.article_id, sentence.text, sentence.start, sentence.end, sentence.hit.published)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "field" or v is not None}


@dataclass
class Answer:
    text: str
    citations: list[Citation]
    grounded: float  # share of the answer's content words found in the cited sentences
    timings: dict = field(default_factory=dict)  # seconds: condense, retrieve, first_token, generate, total
    question: str = ""  # the standalone question actually answered
    kind: str = "span"  # span | quote | fact | summary | timeline | not_found
    # Signals the answer/refuse decision looked at (coverage, scores, agreement, the model's span).
    signals: dict = field(default_factory=dict)
    tokens: int = 0  # tokens generated, all attempts included
    closest: list[Citation] = field(default_factory=list)  # not_found: the nearest passages, not citations
    dates: str = ""  # the publication dates the question named, in words ("articles from 2019-11-01 to …")

    @property
    def refused(self) -> bool:
        return self.kind == "not_found"

    def cited_text(self) -> str:
        """The text with its citation marks: "Motegi [1]" (a chat model's text, a summary and a
        timeline have their own)."""
        if self.refused or not self.citations:
            return self.text
        marks = " ".join(f"[{c.n}]" for c in self.citations)
        return self.text if re.search(r"\[\d+\]", self.text) else f"{self.text} {marks}"

    def to_dict(self) -> dict:
        return {
            "answer": self.text,
            "kind": self.kind,
            "citations": [c.to_dict() for c in self.citations],
            "closest": [c.to_dict() for c in self.closest],
            "grounded": round(self.grounded, 3),
            "refused": self.refused,
            "question": self.question,
            "signals": {k: round(v, 4) if isinstance(v, float) else v for k, v in self.signals.items()},
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "tokens": self.tokens,
            "dates": self.dates,
        }


@lru_cache(maxsize=None)
def prompt_template(name: str) -> str:
    return (PROMPTS / name).read_text(encoding="utf-8")


def few_shot_prefix() -> str:
    """The few-shot examples every local (base model) prompt starts with: kept primed in the model."""
    return prompt_template("local_answer.txt").split("Evidence: {evidence}")[0]


def normalise_history(history) -> list[tuple[str, str]]:
    """Accept [(user, assistant)] pairs or [{"role", "content"}] messages (Gradio's format)."""
    pairs: list[tuple[str, str]] = []
    if not history:
        return pairs
    pending_user = None
    for item in history:
        if isinstance(item, dict):
            role, content = item.get("role"), item.get("content")
            if isinstance(content, list):  # Gradio 6 messages: [{"type": "text", "text": ...}, ...]
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            content = content if isinstance(content, str) else str(content or "")
            if role == "user":
                pending_user = content
            elif role == "assistant" and pending_user is not None:
                pairs.append((pending_user, content))
                pending_user = None
        else:
            user, assistant = item
            pairs.append((str(user or ""), str(assistant or "")))
    return pairs


def check_history(history, max_turns: int, max_chars: int) -> list[tuple[str, str]]:
    """The history as (user, assistant) pairs, or an InputError naming what is wrong with it:
    an item that is neither a pair nor a message, more than max_turns turns, more than
    max_chars characters."""
    if history is not None and not isinstance(history, (list, tuple)):
        raise InputError("history", "must be a list of [user, assistant] pairs or {role, content} messages")
    if history and len(history) > 2 * max_turns:  # before reading it: messages count two per turn
        raise InputError("history", f"more than {max_turns} turns")
    try:
        pairs = normalise_history(history)
    except (TypeError, ValueError, AttributeError):
        raise InputError("history", "must be a list of [user, assistant] pairs or {role, content} messages") from None
    if len(pairs) > max_turns:
        raise InputError("history", f"{len(pairs)} turns, more than {max_turns}")
    chars = sum(len(user) + len(reply) for user, reply in pairs)
    if chars > max_chars:
        raise InputError("history", f"{chars} characters, more than {max_chars}")
    return pairs


def recent_history(history, max_turns: int, max_chars: int) -> list[tuple[str, str]]:
    """The last turns of a long conversation that fit the limits (the chat page keeps the whole
    conversation on screen; answers read only its last turns)."""
    kept: list[tuple[str, str]] = []
    chars = 0
    for user, reply in reversed(normalise_history(history)):
        chars += len(user) + len(reply)
        if len(kept) == max_turns or chars > max_chars:
            break
        kept.append((user, reply))
    return kept[::-1]


def pick_evidence(ranked: list[Sentence], chars: int) -> list[list[Sentence]]:
    """What a chat model reads: the best sentences that fit in `chars` characters (packed as
    Library.passages packs them), grouped by article — articles in the order of their best
    sentence, sentences in reading order — so that neighbours read as passages. Each sentence
    keeps its article offsets: the model cites them by number."""
    by_article: dict[str, list[Sentence]] = {}
    for sentence in sentences_within(ranked, chars):
        by_article.setdefault(sentence.hit.article_id, []).append(sentence)
    return [sorted(group, key=lambda s: s.start) for group in by_article.values()]


def numbered_sources(articles: list[list[Sentence]]) -> str:
    """Each article's sentences numbered [1], [2], … inside one <<< >>> quote per article, with
    "…" where the article skips text; the title and date above it."""
    blocks, n = [], 0
    for group in articles:
        parts = []
        for i, sentence in enumerate(group):
            n += 1
            if i and sentence.start - group[i - 1].end > 2:
                parts.append("…")
            parts.append(f"[{n}] {quoted(sentence.text)}")
        hit = group[0].hit
        blocks.append(f"Article: {quoted(hit.title)} ({hit.published or 'undated'})\n<<<{' '.join(parts)}>>>")
    return "\n\n".join(blocks)


def speaker_quoted(question: str, ranked: list[Sentence], signals: dict) -> bool:
    """"What did Motegi say?" and the best sentence is Motegi speaking: that answers it, whatever
    the fitted rule makes of a short question's low similarity (it was fitted without this
    signal). Recorded in the signals."""
    speaker = speaker_of(question)
    signals["speaker_quoted"] = float(bool(speaker and ranked and spoken_by(speaker, ranked[0].text)))
    return bool(signals["speaker_quoted"])


_ACRONYM_QUESTION_RE = re.compile(
    r"\bwhat (?:does|did|do) (?:the )?([A-Z][A-Z0-9&-]{1,9}) (?:stand|stands) for|\bwhat is (?:the )?([A-Z][A-Z0-9&-]{1,9}) short for"
    r"|\b(?:full name|long form) of (?:the )?([A-Z][A-Z0-9&-]{1,9})\b", re.I)


def acronym_expansion(question: str, sentence: str) -> str | None:
    """For "What does GSOMIA stand for?": the words of the sentence whose initials spell the
    acronym ("General Security of Military Information Agreement"), small joining words allowed."""
    match = _ACRONYM_QUESTION_RE.search(question)
    if not match:
        return None
    letters = next(g for g in match.groups() if g).upper().replace("-", "").replace("&", "")
    words = re.findall(r"[\w'’-]+", sentence)
    for start in range(len(words)):
        i, n = start, 0
        while i < len(words) and n < len(letters):
            if words[i][0].upper() == letters[n] and (words[i][0].isupper() or n > 0):
                n += 1
            elif n == 0 or words[i].lower() not in {"of", "and", "for", "the", "on", "in", "de"}:
                break
            i += 1
        if n == len(letters):
            phrase = re.search(r"\b" + r"\W+".join(map(re.escape, words[start:i])) + r"\b", sentence)
            if phrase and len(phrase.group(0).split()) > 1:
                return phrase.group(0)
    return None


def with_antecedent(sentence: Sentence) -> Sentence:
    """The sentence joined with the one before it in its chunk when it opens with a pronoun: the
    same article text, offsets from the earlier sentence's start."""
    if not LEADING_PRONOUN_RE.match(sentence.text):
        return sentence
    chunk = sentence.hit
    before = [start for start, end in sentence_spans(chunk.text) if end <= sentence.start - chunk.start]
    if not before:
        return sentence
    start = chunk.start + before[-1]
    return replace(sentence, text=chunk.text[start - chunk.start : sentence.end - chunk.start], start=start)


def coverage(question: str, text: str) -> float:
    """Share of the question's content words (stemmed) that the text contains."""
    q = set(tokenize(question))
    return len(q & set(tokenize(text))) / len(q) if q else 0.0


def groundedness(answer: str, cited: list[str]) -> float:
    words = tokenize(answer)
    if not words:
        return 1.0 if any(answer.lower() in c.lower() for c in cited) else 0.0
    supported = set(tokenize(" ".join(cited)))
    return sum(w in supported for w in words) / len(words)


_NUMBER_RE = re.compile(r"\d[\d,.]*\d|\d")
_NAME_RE = re.compile(r"\b[A-Z][\w'’&.-]*[A-Za-z]\b|\b[A-Z]\b")
_SENTENCE_START_RE = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[-*]\s+)$")


_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty".split())} | {w: str(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)}


def _numbers(text: str) -> set[str]:
    """The numbers a text states, digits or words ("three" and "3" are one number)."""
    words = {_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS}
    return words | {n.replace(",", "").rstrip(".") for n in _NUMBER_RE.findall(text)}


def unsupported_facts(answer: str, evidence: str) -> list[str]:
    """Numbers and names in the answer that the evidence (and question) never mention: what a
    paraphrase keeps and an invention adds. A capitalised word that opens a sentence counts as
    a name only when it is not a common word."""
    said = evidence.lower()
    words = set(re.findall(r"[\w'’-]+", said))
    stated = _numbers(evidence)
    missing = [n for n in _NUMBER_RE.findall(answer) if n.replace(",", "").rstrip(".") not in stated]
    for match in _NAME_RE.finditer(answer):
        word = match.group(0).rstrip(".")
        lower = re.sub(r"['’]s$", "", word.lower())
        # The same name in another form counts: "Japan's" for "Japanese", "Koreans" for "Korea".
        if lower in words or lower in said or (len(lower) >= 4 and any(w.startswith(lower) or (len(w) >= 4 and lower.startswith(w))
                                                                        for w in words)):
            continue
        if _SENTENCE_START_RE.search(answer[: match.start()]) and (lower in _COMMON or not content_lemmas(lower)):
            continue
        if word.isupper() and len(word) == 1:
            continue
        missing.append(word)
    return missing


def quoted(text: str) -> str:
    """Article text inside <<< >>> quotes, on one line: it can neither close the quote nor start
    a line that reads like part of the prompt."""
    return " ".join(text.split()).replace("<<<", "‹‹‹").replace(">>>", "›››")


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
    head = prompt_template("local_answer.txt").split("{question}")[0].rstrip()
    question = " ".join(question.split())
    pmi = llm.log_likelihood(head.format(evidence=" ".join(evidence.split())), question) - llm.log_likelihood(
        head.format(evidence=""), question)
    return {"question_pmi": pmi, "question_pmi_per_word": pmi / max(1, len(question.split()))}


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
    fitted = answerability_rules().get("chat", {}).get(rule_name)
    return fitted["threshold"] if fitted else threshold(None, rule_name, encoder)


class Engine:
    """The answer chain over any EvidenceSource (a Library, or anything ranking sentences)."""

    def __init__(self, evidence: EvidenceSource, llm, settings: Settings):
        self.evidence = evidence
        self.llm = llm
        self.settings = settings
        self._scorer = None  # the answer/refuse decision's scoring model, once looked for (see scorer)
        if hasattr(llm, "keep_prefix"):
            llm.keep_prefix(few_shot_prefix())

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
            from .errors import BackendError
            from .llms import get_llm

            settings = self.settings.model_copy(update={"llm_backend": "local", "local_model": "gemma-3-270m"})
            try:
                scorer = get_llm(settings)
                scorer.check()
                scorer.keep_prefix(few_shot_prefix())
                self._scorer = scorer
            except (BackendError, ImportError):
                self._scorer = False
        return self._scorer or None

    @property
    def encoder(self) -> str | None:
        """The encoder that wrote the evidence's vectors, when its source says (a Library does)."""
        return getattr(getattr(self.evidence, "embedder", None), "recorded", None)

    # --- 1. condense -------------------------------------------------------------------------
    def condense(self, question: str, history) -> tuple[str, str]:
        """(the standalone question, the text to search with). Chat models rewrite a follow-up from
        prompts/condense_chat.txt; where that fails (a small model returns the question as it
        was), and for the local base model, the pronoun is replaced by the previous turn's entity."""
        pairs = normalise_history(history)
        if not pairs:
            return question, question
        standalone = ""
        if self.llm.style == "chat":
            transcript = "\n".join(f"User: {u}\nAssistant: {a}" for u, a in pairs[-3:])
            prompt = prompt_template("condense_chat.txt").format(history=transcript, question=question)
            text = "".join(self.llm.stream([{"role": "user", "content": prompt}], max_tokens=96)).strip()
            standalone = text.splitlines()[0].strip() if text else ""
        if not standalone or standalone.lower() == question.lower():
            standalone = rewrite_follow_up(question, pairs)
        previous = pairs[-1][0]
        if standalone == question or standalone.startswith(previous) or not has_pronoun(standalone):
            return standalone, standalone
        return standalone, f"{previous} {standalone}"  # "What did Motegi call it?": "it" is in the previous turn

    # --- 4. prompt ---------------------------------------------------------------------------
    def build_prompt(self, question: str, evidence: list[list[Sentence]]):
        """Chat messages with the evidence as numbered passages (pick_evidence); for a completion
        model, the few-shot prompt with the sentences as one evidence line."""
        if self.llm.style == "chat":
            return [
                {"role": "system", "content": prompt_template("chat_system.txt")},
                {"role": "user", "content": prompt_template("chat_user.txt").format(
                    sources=numbered_sources(evidence), question=" ".join(question.split()))},
            ]
        return self.local_prompt(question, " ".join(e.text for group in evidence for e in group))

    @staticmethod
    def local_prompt(question: str, evidence: str) -> str:
        """The few-shot completion prompt. Article text is data: newlines are flattened so it
        cannot fake a new "Question:" turn; no trailing newline: the model continues on the
        "Answer:" line, as in the examples."""
        return prompt_template("local_answer.txt").rstrip().format(evidence=" ".join(evidence.split()), question=" ".join(question.split()))

    # --- the chain ---------------------------------------------------------------------------
    def stream(self, question: str, history=None, filters=None) -> Iterator[str | Answer]:
        """Yields answer text as it is produced, then the final Answer. `filters`: as for
        Library.search (article_id, source, date_from, date_to); a date the question names
        ("in November 2019", "on Tuesday") narrows them further."""
        question = check_question(question, self.settings.max_question_chars)
        history = check_history(history, self.settings.max_history_turns, self.settings.max_history_chars)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        dated, asked, filters, refusal = self._dated(question, history, filters)
        kind, detail = answer_kind(asked)
        if dated is not None and kind not in ("fact", "summary", "timeline"):
            topic = timeline_topic(asked, dated=True)  # "What happened on Tuesday?": that day's articles
            if topic is not None:
                kind, detail = "timeline", topic
        answer = refusal
        if refusal is not None:
            standalone = question
            timings["first_token"] = time.perf_counter() - t0
            yield refusal.text
        elif kind in ("summary", "timeline"):
            t = time.perf_counter()
            make = self._summary if kind == "summary" else self._timeline
            for item in make(asked, detail, history, filters):
                if isinstance(item, Answer):
                    answer = item
                else:
                    timings.setdefault("first_token", time.perf_counter() - t)
                    yield item
            timings["generate"] = time.perf_counter() - t
            standalone = asked
        else:
            standalone, search_text = self.condense(asked, history)
            timings["condense"] = time.perf_counter() - t0
            t = time.perf_counter()
            kind, fact_field = answer_kind(standalone)
            kind = kind if kind in ("span", "quote", "fact") else "span"
            ranked = rank_evidence(standalone, self.evidence.sentences(search_text, filters=filters, pool=self.settings.answer_k))
            timings["retrieve"] = time.perf_counter() - t
            t = time.perf_counter()
            if kind == "fact":
                answer = self._fact(standalone, fact_field, ranked)
                timings["first_token"] = time.perf_counter() - t
                yield answer.text
            else:
                generate = self._generate_chat if self.llm.style == "chat" else self._generate_local
                for item in generate(standalone, search_text, kind, ranked, timings, t):
                    if isinstance(item, Answer):
                        answer = item
                    else:
                        yield item
                timings["generate"] = time.perf_counter() - t
        answer.question = standalone
        if dated is not None:
            answer.signals |= dated.signals()
            answer.dates = dated.describe()
        answer.timings = timings | {"total": time.perf_counter() - t0}
        yield answer

    # --- dates in questions ------------------------------------------------------------------
    def read_dates(self, question: str, days: list[str], history=None) -> tuple[DateRange | None, str]:
        """(the publication dates a question names, the question without them). Weekday names
        count back from the article being discussed (the previous turn's) or else the newest one;
        "yesterday" / "last week" from today, or from the newest article when the library holds
        nothing that recent. `days`: the articles' dates, sorted. In a library without dates, a
        date is just words of the question."""
        if not days or not has_date(question):
            return None, question
        from datetime import date

        newest, today = date.fromisoformat(days[-1]), date.today()
        dated, rest = read_dates(question, today=today, article_day=newest)
        if dated is None:
            return None, question
        if dated.counted_from == "article":
            discussed = self._discussed_day(history)
            if discussed:
                dated, rest = read_dates(question, today=today, article_day=discussed)
            dated.basis = f"counted from the {'article discussed' if discussed else 'newest article'} ({discussed or newest})"
        elif dated.counted_from == "today":
            if not _any_between(days, dated.date_from, dated.date_to) and newest < today:
                dated, rest = read_dates(question, today=newest, article_day=newest)
                dated.basis = f"counted from the newest article ({newest}): the library holds nothing that recent"
            else:
                dated.basis = f"counted from today ({today})"
        return dated, rest

    def _discussed_day(self, history):
        """The date of the article the conversation is about: the one its last question's best
        evidence comes from."""
        pairs = normalise_history(history)
        if not pairs:
            return None
        from datetime import date

        ranked = self.evidence.sentences(" ".join(pairs[-1]), pool=5)
        published = ranked[0].hit.published if ranked else None
        return date.fromisoformat(published) if published else None

    def _dated(self, question: str, history, filters) -> tuple[DateRange | None, str, Filters, Answer | None]:
        """(the dates the question names, the question without them, the filters narrowed to
        them, a refusal when no article was published then). A date the evidence itself speaks of
        ("Which town was destroyed in 1997?" over a 2019 article) is no publication filter: then
        the question stays whole and the filters as given."""
        days = sorted({r.published for r in self.evidence.articles() if r.published}) if has_date(question) else []
        dated, asked = self.read_dates(question, days, history)
        narrowed = with_dates(filters, dated)
        if dated is None:
            return None, question, narrowed, None
        if _any_between(days, narrowed.date_from, narrowed.date_to):
            return dated, asked, narrowed, None
        undated = with_dates(filters, None)
        ranked = self.evidence.sentences(question, filters=undated, pool=self.settings.answer_k)
        spoken = re.sub(r"^(?:in|on|during|since|after|before|until|till|from|of|as of|the)\s+", "", dated.phrase, flags=re.I)
        if not dated.counted_from and any(spoken.lower() in s.text.lower() for s in ranked[:3]):
            return None, question, undated, None
        target = narrowed.date_from or narrowed.date_to
        closest = sorted(sorted(days, key=lambda d: abs(_ordinal(d) - _ordinal(target)))[:3] if target else days[-3:])
        refusal = self.not_found(ranked, {"closest_dates": ", ".join(closest)})
        refusal.text = f"No {dated.describe()}." + (f" The closest dates available: {', '.join(closest)}." if closest else "")
        return dated, asked, narrowed, refusal

    def ask(self, question: str, history=None, filters=None) -> Answer:
        answer = None
        for item in self.stream(question, history, filters):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def not_found(self, ranked: list[Sentence], signals: dict | None = None) -> Answer:
        """The refusal, with the closest passages for a person to check."""
        closest = [Citation.of(n, s) for n, s in enumerate(ranked[: self.settings.closest_passages], start=1)]
        return Answer(NOT_FOUND, [], 0.0, kind="not_found", signals=dict(signals or {}), closest=closest)

    # --- summary: one whole article ----------------------------------------------------------
    def _summary(self, question: str, length: str, history, filters: Filters):
        """The article's lede and most central sentences, cited, in article order: a sentence or
        two (tl;dr), three (summary) or a list of five (key points). A chat model writes them up
        with [n] citations; where its text is not grounded in them, they are given as they are."""
        record = self._summary_article(question, history, filters)
        if record is None:
            answer = self.not_found([])
            yield answer.text
            yield answer
            return
        _, sentences, vectors = self.evidence.article_sentences(record.id)
        picked = [sentences[i] for i in summary_picks(sentences, vectors, length)]
        citations = [Citation(n, record.title, record.id, s.text, s.start, s.end, record.published) for n, s in enumerate(picked, 1)]
        signals = {"article_id": record.id, "length": length}
        answer = None
        if self.llm.style == "chat" and citations:
            answer = yield from self._chat_summary(question, length, citations, signals)
        if answer is None:
            if length == "key_points":
                text = "\n".join(f"- {c.quote} [{c.n}]" for c in citations)
            else:
                text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
            answer = Answer(text, citations, 1.0, kind="summary", signals=signals)
            yield text
        yield answer

    def _chat_summary(self, question: str, length: str, citations: list[Citation], signals: dict):
        """A chat model's summary of the chosen sentences, or None when it cites none of them or
        strays from them (its tokens have streamed; the caller then gives the sentences)."""
        sources = "\n".join(f"[{c.n}] <<<{quoted(c.quote)}>>>" for c in citations)
        shape = {"tldr": "in one or two sentences", "summary": "in two to four sentences",
                 "key_points": "as a short list of key points, one line each starting with '- '"}[length]
        messages = [{"role": "system", "content": prompt_template("chat_system.txt")},
                    {"role": "user", "content": prompt_template("chat_summary.txt").format(sources=sources, shape=shape, question=question)}]
        raw = "".join(self.llm.stream(messages, max_tokens=320)).strip()
        cited = sorted({int(n) for n in re.findall(r"\[(\d+)\]", raw) if 0 < int(n) <= len(citations)})
        if not cited or _is_refusal(raw):
            return None
        score = groundedness(re.sub(r"\[\d+\]", "", raw), [citations[n - 1].quote for n in cited])
        if score < self.settings.min_grounded:
            return None
        yield raw
        return Answer(raw, [citations[n - 1] for n in cited], score, kind="summary", signals=signals | {"grounded": score})

    def _summary_article(self, question: str, history, filters: Filters):
        """The article a summary question is about: the one its quoted or written-out title names;
        else the best match for its own topic words ("Summarize the story about GSOMIA"); else the
        one the conversation is about; else the only one, or the newest, within the filters."""
        records = self._records(filters)
        if not records:
            return None
        folded = question.casefold()
        named = [r for r in records if r.title and (r.title.casefold() in folded or
                 any(q.strip().casefold() in r.title.casefold() for q in re.findall(r"[\"“]([^\"”]{4,})[\"”]", question)))]
        if named:
            return named[0]
        by_id = {r.id: r for r in records}
        topic = [w for w in content_lemmas(question) if w not in _SUMMARY_WORDS]
        pairs = normalise_history(history)
        search = question if topic else " ".join(pairs[-1]) if pairs else None
        if search and len(records) > 1:
            for sentence in self.evidence.sentences(search, filters=filters, pool=5):
                if sentence.hit.article_id in by_id:
                    return by_id[sentence.hit.article_id]
        return newest_first(records, lambda r: r.published)[0]

    def _records(self, filters: Filters) -> list:
        """The article records within the filters."""
        return [r for r in self.evidence.articles()
                if filters.matches({"article_id": r.id, "source": r.source,
                                    "published_ord": date_ord(r.published) if r.published else None})]

    # --- timeline: a topic over time, or the articles of some dates ---------------------------
    def _timeline(self, question: str, topic: str, history, filters: Filters):
        """The articles on the topic (or, for "What happened on Tuesday?", all of those dates),
        newest first, each with its date, headline and the sentence that matters: the one that
        speaks of the topic best, or the lede."""
        found: list[tuple] = []  # (record-like hit, sentence text, start, end)
        if content_lemmas(topic):
            best: dict[str, Sentence] = {}
            for sentence in self.evidence.sentences(topic, filters=filters, pool=self.settings.answer_k):
                best.setdefault(sentence.hit.article_id, sentence)
            for sentence in best.values():
                if on_topic(topic, sentence.text, sentence.hit.text, sentence.similarity):
                    hit = sentence.hit
                    found.append((hit.article_id, hit.title, hit.published, sentence.text, sentence.start, sentence.end))
        else:
            for record in newest_first(self._records(filters), lambda r: r.published)[:TIMELINE_ARTICLES]:
                _, sentences, _ = self.evidence.article_sentences(record.id)
                lede = lede_index(sentences)
                if lede is not None:
                    s = sentences[lede]
                    found.append((record.id, record.title, record.published, s.text, s.start, s.end))
        found = newest_first(found, lambda item: item[2])[:TIMELINE_ARTICLES]
        if not found:
            answer = self.not_found(self.evidence.sentences(topic, filters=filters, pool=5) if topic else [])
            yield answer.text
            yield answer
            return
        citations = [Citation(n, title, article_id, text, start, end, published)
                     for n, (article_id, title, published, text, start, end) in enumerate(found, 1)]
        lines = [f"{c.published or 'undated'} — {c.title}: {c.quote} [{c.n}]" for c in citations]
        text = lines[0] if len(lines) == 1 else "\n".join(f"- {line}" for line in lines)
        yield text
        yield Answer(text, citations, 1.0, kind="timeline", signals={"topic": topic, "articles": len(citations)})

    # --- fact: the article record ------------------------------------------------------------
    def _fact(self, question: str, name: str, ranked: list[Sentence]) -> Answer:
        """Answered from the stored record of the article the question is about: the only one, or
        the one the best evidence sentence comes from."""
        records = {r.id: r for r in self.evidence.articles()}
        if not records:
            return self.not_found(ranked)
        record = next(iter(records.values())) if len(records) == 1 else records.get(ranked[0].hit.article_id) if ranked else None
        if record is None:
            return self.not_found(ranked)
        value = getattr(record, name, None)
        label = FACT_LABELS[name]
        if not value:
            text = f"The article \"{record.title}\" has no {label} on record."
        else:
            text = str(value)
        citation = Citation(1, record.title, record.id, f"{label}: {value or 'none'}", 0, 0, record.published, field=name)
        return Answer(text, [citation], 1.0 if value else 0.0, kind="fact", signals={"field": name})

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
        if scorer is not None and ranked:
            signals |= model_signals(scorer, question, self._quote(asked, ranked, signals).text)
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
            answer = self.not_found(ranked, signals | {"model_refused": 1.0})
        else:
            answer = self._ground_chat(question, raw, evidence, signals)
            signals["model_kept"] = float(answer is not None)
            if answer is None:  # words the evidence does not bear out: quote it, if it speaks of what was asked
                on_topic = bool(ranked) and lemma_coverage(asked, ranked[0].text, skip_names=True) > 0
                answer = self._quote(asked, ranked, signals) if on_topic else self.not_found(ranked, signals)
            if answer.kind == "span" and kind == "quote":
                answer.kind = "quote"  # why / how / what-was-said: the model's sentences, citing the quotes
        answer.signals.setdefault("model_answer", raw)
        answer.tokens = len(parts)
        yield answer

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

    # --- the small local model ---------------------------------------------------------------
    def _generate_local(self, question: str, asked: str, kind: str, ranked: list[Sentence], timings: dict, t: float):
        """Decide from the evidence and the reader whether to answer; then answer with the
        reader's span, or quote the best evidence sentence. `asked`: what was searched (a
        follow-up with the previous question)."""
        signals = evidence_signals(question, ranked)
        rule = "local" if hasattr(self.llm, "score") else "evidence"
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

    def _read(self, question: str, ranked: list[Sentence], signals: dict, scoring: bool, generated: str | None = None,
              scorer=None) -> Answer | None:
        """The reader's best candidate as a span, cited to its sentence, when the fitted rule is
        sure enough of it (else None: the sentence is quoted). An acronym spelled out by a
        sentence needs no reader. `generated`: a model's own answer from the best sentence; the
        candidate it names, if any, is taken. `scorer`: the model that scores candidates (default:
        the engine's own). Adds the reader's signals for the answer/refuse rule."""
        scorer = scorer or self.llm
        for sentence in ranked[: reader.SENTENCES]:
            expansion = acronym_expansion(question, sentence.text)
            if expansion:
                signals |= {"reader_best": 1.0, "reader_type_fit": 1.0}
                return Answer(expansion, [Citation.of(1, sentence)], 1.0, kind="span")
        found = reader.read(question, ranked, prompt_for=self.local_prompt if scoring else None, llm=scorer if scoring else None)
        best = found[0] if found else None
        if generated:
            said = generated.strip(" \"'.").lower()
            named = [c for c in found if c.sentence_index == 0 and said and (said in c.text.lower() or c.text.lower() in said)]
            best = named[0] if named else best
        signals["reader_best"] = best.probability if best else 0.0
        signals["reader_type_fit"] = best.features["type_fit"] if best else 0.0
        name = "local" if scoring else "evidence"
        if best is None or best.probability < reader.rule()[name]["threshold"]:
            return None
        return Answer(best.text, [Citation.of(1, ranked[best.sentence_index])], 1.0, kind="span",
                      signals={"probability": best.probability})

    def _quote(self, asked: str, ranked: list[Sentence], signals: dict) -> Answer:
        """The best evidence sentence, verbatim and cited: nothing is invented. With it, the next
        best sentence of the same story (among the reader's sentences): the two, in reading
        order, hold the answer far more often than one (natural news questions kept apart from the
        benchmark: 0.573 vs 0.465; SQuAD 2.0: 0.865 vs 0.802) for ~20 more characters at the
        median (the best is often short). A sentence that opens with a pronoun ("He said …")
        comes with the one before it, which names who. Whether to quote at all is the
        answer/refuse rule's call (it reads how much of what is asked the best sentence holds)."""
        best = ranked[0]
        picked = [with_antecedent(best)]
        second = next((s for s in ranked[1:reader.SENTENCES] if s.hit.article_id == best.hit.article_id), None)
        if second is not None:
            second = with_antecedent(second)
            if second.end <= picked[0].start or second.start >= picked[0].end:
                picked.append(second)
        picked.sort(key=lambda s: s.start)
        text = picked[0].text
        for before, after in zip(picked, picked[1:]):
            text += (" " if after.start - before.end <= 2 else " … ") + after.text
        return Answer(text, [Citation.of(n, s) for n, s in enumerate(picked, 1)], 1.0, kind="quote", signals=signals)


def with_dates(filters, dated: DateRange | None) -> Filters:
    """The caller's filters narrowed to the dates a question names (both bounds kept: the later
    start, the earlier end)."""
    filters = Filters.parse(filters)
    if dated is None:
        return filters
    starts = [d for d in (filters.date_from, dated.date_from) if d]
    ends = [d for d in (filters.date_to, dated.date_to) if d]
    return replace(filters, date_from=max(starts) if starts else None, date_to=min(ends) if ends else None)


def _any_between(days: list[str], date_from: str | None, date_to: str | None) -> bool:
    return any((not date_from or d >= date_from) and (not date_to or d <= date_to) for d in days)


def _ordinal(iso_day: str) -> int:
    from datetime import date

    return date.fromisoformat(iso_day).toordinal()


_FILLER = set(content_lemmas("The answer is: according to the sources, article, source"))
# Sentence-opening words that are not names ("The", "According", "Yes").
_COMMON = {"the", "a", "an", "according", "yes", "no", "it", "he", "she", "they", "this", "that", "these", "those", "in", "on",
           "at", "as", "for", "after", "before", "during", "his", "her", "their", "its", "there", "some", "many", "most",
           "both", "all", "one", "two", "three", "about", "around", "nearly", "over", "more", "less", "only", "because"}
# Words of a summary question that say how, not what: left out when looking for its topic.
_SUMMARY_WORDS = set(content_lemmas(
    "summary summarize summarise summarised summarized article story report piece news give key main major point points "
    "takeaways highlights tell please brief briefly short version sentence sentences line lines gist recap overview "
    "tl dr tldr nutshell important essential things facts details findings bullet one two can could all say says"))


# A chat model's ways of saying the articles don't say, at the start of its reply.
_REFUSAL_RE = re.compile(
    r"^(?:the (?:articles?|sources?|passages?|texts?|provided \w+) (?:do|does|did) ?n[o']t (?:say|mention|state|specify|provide|contain|include|answer)"
    r"|the (?:articles?|sources?|passages?) (?:don't|doesn't) |there is no (?:information|mention)|(?:this|that) is not (?:mentioned|stated|specified)"
    r"|(?:i'm sorry|sorry|i (?:cannot|can't|could not|couldn't))\b|no(?:ne)? of the (?:articles|sources|passages)|not (?:mentioned|stated|specified) in)",
    re.I)


def _is_refusal(raw: str) -> bool:
    text = raw.strip().replace("’", "'")
    return text.strip(".").lower() in {r.strip(".") for r in _REFUSALS} or bool(_REFUSAL_RE.match(text))



