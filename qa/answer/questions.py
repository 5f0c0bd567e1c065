"""What a question asks: input checks, the kind of answer it wants, and follow-ups rewritten into
standalone questions (its words and lemmas: qa/text/words.py).

Pure text work, no models: cheap enough to run on every question."""

from __future__ import annotations

import re

from qa.errors import InputError


def check_question(question: str | None, max_chars: int) -> str:
    """The question with whitespace collapsed, or an InputError naming what is wrong with it."""
    text = " ".join((question or "").split())
    if not text:
        raise InputError("question", "is empty")
    if len(text) > max_chars:
        raise InputError("question", f"is too long ({len(text):,} characters; at most {max_chars:,})")
    if not any(ch.isalnum() for ch in text):
        raise InputError("question", "has no words to search for")
    return text


# --- the kind of answer a question wants ----------------------------------------------------------
# Questions about the article itself, answered from its stored record. Order matters: the first
# pattern that matches names the field.
_ARTICLE = r"(?:the |this |that )?(?:article|story|report|piece|news(?: story| report)?)"
FACT_PATTERNS: list[tuple[str, re.Pattern]] = [
    # "Who wrote the headline of the article?" (a chat model's rewrite of "Who wrote it?" after a
    # question about the headline) asks for the byline too.
    ("author", re.compile(rf"\bwho (?:wrote|writes|authored|reported|penned|filed) (?:(?:the )?(?:headline|title|text|words) of )?(?:{_ARTICLE}|it|this)\b|"
                          rf"\b(?:author|writer|byline|reporter)s? of {_ARTICLE}|\bwho is the (?:author|writer|reporter)\b(?! of (?!{_ARTICLE}))", re.I)),
    ("url", re.compile(rf"\b(?:url|link|web ?address)\b.*\b{_ARTICLE}|\bwhere can i (?:read|find) {_ARTICLE}", re.I)),
    ("source", re.compile(rf"\b(?:which|what) (?:news ?paper|outlet|agency|publication|source|site|website)\b.*\b(?:publish|run|carr|report|come|write)|\bsource of {_ARTICLE}|\bwhere (?:does|did) {_ARTICLE} come from", re.I)),
    ("published", re.compile(rf"\bwhen (?:was|is|did) {_ARTICLE}\b.*\b(?:publish|written|write|released|come out|appear|dated)|\b(?:date|publication date) of {_ARTICLE}|\bhow old is {_ARTICLE}", re.I)),
    ("dateline", re.compile(rf"\bwhere (?:was|is|did) {_ARTICLE}\b.*\b(?:report|filed|file|written|datelined|from)|\bdateline\b", re.I)),
    ("title", re.compile(rf"\b(?:headline|title) of {_ARTICLE}|\bwhat is {_ARTICLE}(?:'s)? (?:headline|title)|"
                         rf"\bwhat (?:is|was) the headline\b|\bwhat headline\b", re.I)),
]
# Questions whose answer is a statement, not a phrase: why, how (not how many/much/long/old…),
# and what someone said, thought or did. The answer is the evidence sentence itself.
_QUOTE_RE = re.compile(
    r"^\s*(?:why\b|how (?!many|much|long|old|far|big|large|often|tall|high|deep|soon|late|early)\w|"
    r"what (?:did|does|do|has|have|had|will|would) .+\b(?:say|said|tell|told|think|thought|argue|claim|"
    r"warn|announce|promise|add|urge|describe|call|mean|do|want|propose|suggest|believe|explain|ask)\b|"
    r"(?:explain|describe)\b|what (?:was|is) the reason\b|for what reason\b)", re.I)


# Questions about a whole article: its summary, in one or two sentences (tl;dr) or as key points.
# The first pattern that matches names the length.
SUMMARY_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("tldr", re.compile(r"\btl;? ?dr\b|\bin (?:one|a|two|1|2) (?:sentence|line)s?\b|\bin a nutshell\b|\bbriefly\b|\bshort version\b", re.I)),
    ("key_points", re.compile(r"\b(?:key|main|major|important|essential) (?:points?|facts|takeaways|details|things|findings)\b"
                              r"|\btakeaways\b|\bhighlights\b|\bbullet points\b|\bpoints? (?:of|in) (?:the |this |that )?(?:article|story)", re.I)),
    ("summary", re.compile(rf"\bsumm?ar(?:y|ise|ize|ised|ized|ising|izing)\b|\bgist\b|\brecap\b|\boverview of {_ARTICLE}"
                           rf"|\bwhat(?:'s|’s| is| was)\s+{_ARTICLE}\s+(?:all\s+)?about\b|\bwhat(?:'s|’s| is| was) (?:it|this|that) (?:all )?about\b"
                           rf"|\bwhat (?:is|was|'s) [\"“][^\"”]+[\"”] about\b|\bwhat does {_ARTICLE} say\b\W*$", re.I)),
]
# Questions about a topic over time: the matching articles, newest first. The topic is what follows.
_TIMELINE_RE = re.compile(
    # "the latest on X" / "new with X" / "the latest?", but not "the latest death toll" (a factoid)
    r"^\W*(?:what(?:'s|’s| is| are| was)\s+(?:the\s+)?(?:(?:latest|newest|most recent)(?:\s+(?:news|developments?|updates?|information))?"
    r"(?:\s+(?:on|about|with|in|regarding|for|from|concerning)\s+(?P<t1>.+)|\W*$)|new\s+(?:with|on|about|in|regarding|concerning)\s+(?P<t8>.+))"
    r"|(?:(?:is there|are there)\s+)?any\s+(?:new\s+|recent\s+|latest\s+)?(?:news|updates?|developments?)\s+(?:on|about|regarding|with)\s+(?P<t2>.*)"
    r"|(?:give me |show me |tell me )?(?:the )?(?:latest|recent) (?:news|developments?|updates?) (?:on|about|regarding)\s+(?P<t3>.*)"
    r"|what\s+happened\s+(?:with|regarding|about|in the case of)\s+(?P<t4>.*)"
    r"|how\s+(?:did|has|have|is|are|does)\s+(?P<t5>.+?)\s+(?:develop(?:ed|ing)?|evolve[ds]?|unfold(?:ed|ing)?|progress(?:ed|ing)?)\b.*"
    r"|(?:give me |show me )?(?:a |the )?(?:timeline|chronology|history of events)\s+(?:of|for|on|about)\s+(?P<t6>.*)"
    r"|what(?:'s|’s| is| has been)\s+(?:been\s+)?happening\s+(?:with|on|in|to|at)\s+(?P<t7>.*))$", re.I)
# "What happened?" with a date ("… on Tuesday", "… last week"): the articles of those dates.
_WHAT_HAPPENED_RE = re.compile(r"^\W*what(?:'s| has| was)?\s+(?:happened|happening|(?:was |is )?(?:in the )?news)\b(?:\s+(?:in|to|with|at|on|about)\b)?\s*(?P<topic>.*)$", re.I)


def summary_length(question: str) -> str | None:
    """"tldr", "summary" or "key_points" for a question about a whole article, else None."""
    for name, pattern in SUMMARY_PATTERNS:
        if pattern.search(question):
            return name
    return None


def timeline_topic(question: str, dated: bool = False) -> str | None:
    """The topic of a question about the news over time ("What's the latest on GSOMIA?" ->
    "GSOMIA"; "" for no topic), or None for any other question. `dated`: the question named a
    date, so a plain "What happened?" asks for the articles of those dates."""
    match = _TIMELINE_RE.match(question.strip())
    if not match and dated:
        match = _WHAT_HAPPENED_RE.match(question.strip())
    if not match:
        return None
    topic = next((g for g in match.groups() if g), "")
    return re.sub(r"^(?:the|a|an)\s+|[\s?.!]+$", "", topic.strip(), flags=re.I)


def answer_kind(question: str) -> tuple[str, str | None]:
    """("fact", field) for a question about the article itself, ("summary", length) for one
    about a whole article, ("timeline", topic) for the news on a topic over time, ("quote",
    None) for one whose answer is a statement (why / how / what someone said or did), else
    ("span", None)."""
    for name, pattern in FACT_PATTERNS:
        if pattern.search(question):
            return "fact", name
    length = summary_length(question)
    if length:
        return "summary", length
    topic = timeline_topic(question)
    if topic is not None:
        return "timeline", topic
    if _QUOTE_RE.search(question):
        return "quote", None
    return "span", None


# --- content words, lemmatised ---------------------------------------------------------------------
# --- follow-ups --------------------------------------------------------------------------------------
_POSSESSIVE = {"his", "their", "its"}
_PRONOUN_RE = re.compile(r"\b(he|she|they|him|them|his|their|its|her|it)\b", re.I)
_CITATION_RE = re.compile(r"\s*\[\d+\]")
# A name: capitalised words, allowing initials and short joiners (Gen. Mark Milley, Kang Kyung-wha).
_NAME_RE = re.compile(r"\b(?:[A-Z][\w.'’-]*)(?:\s+(?:of |de |van |von )?[A-Z][\w.'’-]*)*")
_NOT_NAMES = frozenset("who what when where why how which the a an did does do is was were are i in on at".split())


def _entity(question: str, answer: str) -> str | None:
    """The entity a follow-up's pronoun points at: the previous answer when it is a short name or
    phrase, else the last name the previous question mentions."""
    answer = _CITATION_RE.sub("", answer or "").strip().rstrip(".")
    if answer and not answer.startswith("The articles don't say") and len(answer.split()) <= 5 and not answer.startswith("⚠"):
        return answer
    names = [m.group(0) for m in _NAME_RE.finditer(question or "") if m.group(0).split()[0].lower() not in _NOT_NAMES]
    return names[-1] if names else None


def has_pronoun(question: str) -> bool:
    return bool(_PRONOUN_RE.search(question))


def is_follow_up(question: str) -> bool:
    return bool(_PRONOUN_RE.search(question)) or len(question.split()) <= 3


def rewrite_follow_up(question: str, history: list[tuple[str, str]]) -> str:
    """A follow-up whose pronoun points back ("What did he say about North Korea?") rewritten with
    the entity of the previous turn ("What did Motegi say about North Korea?"). A small base model
    cannot do this rewrite itself; without a pronoun or an entity, the previous question is
    prepended so that the search still sees the topic."""
    if not history or not is_follow_up(question):
        return question
    previous_question, previous_answer = history[-1]
    # After a question about the article itself, "it" is the article.
    entity = "the article" if answer_kind(previous_question)[0] == "fact" else _entity(previous_question, previous_answer)
    if entity is None or not _PRONOUN_RE.search(question):
        return f"{previous_question} {question}"
    replaced = False

    def swap(match: re.Match) -> str:
        nonlocal replaced
        if replaced:  # only the first pronoun: "What did he say about his visit?"
            return match.group(0)
        replaced = True
        word = match.group(1).lower()
        if word in _POSSESSIVE or (word == "her" and _possessive_her(question, match.end())):
            return f"{entity}'s"
        return entity

    return _PRONOUN_RE.sub(swap, question)


def _possessive_her(question: str, end: int) -> bool:
    """'her' before a noun is possessive (her visit), before a preposition or the end an object."""
    rest = question[end:].split()
    return bool(rest) and rest[0].lower().strip("?.,!") not in {"about", "to", "for", "with", "on", "in", "at", "from", "by", "that", ""}
