"""One whole article summarised: its lede and most central sentences, cited (a chat model writes
them up)."""

from __future__ import annotations

import re

from qa.answer.overview import newest_first, summary_picks
from qa.text.words import content_lemmas
from qa.store.filters import Filters
from qa.answer.conversation import normalise_history
from qa.answer.grounding import _SUMMARY_WORDS, _is_refusal, groundedness
from qa.answer.prompting import prompt_template, quoted
from qa.answer.types import Answer, Citation


class SummaryRoute:
    """Engine methods of this route (the Engine class mixes them in: they share its settings,
    model and evidence)."""

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
