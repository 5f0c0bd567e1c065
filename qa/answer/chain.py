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

Short answers come from the reader (qa/answer/reader.py): typed candidates (entities, noun phrases) of
the best evidence sentences, ranked by a rule fitted on natural news questions, with the local
model scoring the best few as answers (log-likelihood after its few-shot prompt, not free
generation); without a candidate sure enough, the best sentence is quoted. Chat models get numbered
source sentences and cite them as [n]. Whether to answer at all is decided from the evidence
(scores, retriever agreement, lemma coverage of the question) and the reader's best candidate, by
a rule fitted on natural questions (NewsQA), questions about stories left out of the library, and
SQuAD 2.0 (evals/reader_fit.py writes qa/answer/answerability.json)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Iterator

from qa.config import Settings
from qa.answer.dates import DateRange, has_date, read_dates
from qa.answer.questions import answer_kind, check_question, has_pronoun, rewrite_follow_up, timeline_topic
from qa.retrieve.ranking import rank_evidence
from qa.store.filters import Filters
from qa.retrieve.hybrid import Sentence

from qa.answer.routes.span import SpanRoute
from qa.answer.routes.quote import QuoteRoute
from qa.answer.routes.local import LocalRoute
from qa.answer.routes.chat import ChatRoute
from qa.answer.routes.fact import FactRoute
from qa.answer.routes.summary import SummaryRoute
from qa.answer.routes.timeline import TimelineRoute
from qa.answer.conversation import check_history, normalise_history
from qa.answer.prompting import few_shot_prefix, numbered_sources, prompt_template
from qa.answer.types import Answer, Citation, EvidenceSource, NOT_FOUND


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


class Engine(SpanRoute, QuoteRoute, LocalRoute, ChatRoute, FactRoute, SummaryRoute, TimelineRoute):
    """The answer chain over any EvidenceSource (a Library, or anything ranking sentences)."""
    def __init__(self, evidence: EvidenceSource, llm, settings: Settings):
        self.evidence = evidence
        self.llm = llm
        self.settings = settings
        self._scorer = None  # the answer/refuse decision's scoring model, once looked for (see scorer)
        if hasattr(llm, "keep_prefix"):
            llm.keep_prefix(few_shot_prefix())

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
            if question.rstrip().endswith("?") and not standalone.endswith("?"):
                standalone = ""  # a statement: the model answered instead of rewriting
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
        finish = getattr(self.evidence, "finish_answer", None)  # the library's URLs and wire copies
        if finish is not None:
            finish(answer)
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
