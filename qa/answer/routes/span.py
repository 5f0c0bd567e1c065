"""A short answer copied from a cited sentence: the reader's best typed candidate
(qa/answer/reader.py), or an acronym a sentence spells out."""

from __future__ import annotations

import re

from qa.answer import reader
from qa.retrieve.hybrid import Sentence
from qa.answer.types import Answer, Citation


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


class SpanRoute:
    """Engine methods of this route (the Engine class mixes them in: they share its settings,
    model and evidence)."""

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
