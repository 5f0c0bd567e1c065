"""Questions about the article itself (author, date, dateline, headline, source, URL), from its
stored record."""

from __future__ import annotations


from qa.retrieve.hybrid import Sentence
from qa.answer.types import Answer, Citation


FACT_LABELS = {
    "author": "author", "published": "publication date", "dateline": "dateline", "title": "headline",
    "source": "source", "url": "URL",
}


class FactRoute:
    """Engine methods of this route (the Engine class mixes them in: they share its settings,
    model and evidence)."""

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
