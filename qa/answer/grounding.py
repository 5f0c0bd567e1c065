"""Checks of a model's answer against its evidence: word support, invented names and numbers,
refusals."""

from __future__ import annotations

import re

from qa.text.words import content_lemmas
from qa.text.tokens import tokenize


# A chat model's citation gives way to another sentence whose share of the answer's words plus
# share of the question's is this much higher (see Engine._ground_chat).
CITATION_REPAIR_MARGIN = 0.25


_REFUSALS = {"", "unanswerable", "unknown", "none", "n/a", "no answer", "not stated", "the articles don't say."}


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
