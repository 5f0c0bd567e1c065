"""The news on a topic over time, or the articles of the dates a question names: newest first, each
with its key sentence."""

from __future__ import annotations


from qa.answer.overview import TIMELINE_ARTICLES, lede_index, newest_first, on_topic
from qa.text.words import content_lemmas
from qa.store.filters import Filters, date_ord
from qa.retrieve.hybrid import Sentence
from qa.answer.types import Answer, Citation


class TimelineRoute:
    """Engine methods of this route (the Engine class mixes them in: they share its settings,
    model and evidence)."""

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

    def _records(self, filters: Filters) -> list:
        """The article records within the filters."""
        return [r for r in self.evidence.articles() if not getattr(r, "story", None)  # a wire copy is its story
                and filters.matches({"article_id": r.id, "source": r.source,
                                    "published_ord": date_ord(r.published) if r.published else None})]
