"""Words of questions and evidence: content words lemmatised (so that say/said and
decide/decision meet), names and numbers, and how much of a question a text covers. Pure text
work, no models; the lemma table is read from the cache (see _lemma_table)."""

from __future__ import annotations

import contextlib
import importlib.abc
import re
import sys
import threading
from functools import lru_cache

from qa.lazy import load_once


_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|\d[\d,.]*\d|\d")
# Words that say nothing about what a sentence holds: question words, auxiliaries, pronouns.
_STOP = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom whose why will with would you your
    yours yourself yourselves also s t many much according""".split()
)
# Derivational endings that inflectional lemmas do not undo, mapped to the verb's stem form:
# decision -> decid(e), conclusion -> conclud(e), invasion -> invad(e), explosion -> explod(e).
_DERIVATIONS = [(re.compile(r"([aeiou])sion$"), r"\1d"), (re.compile(r"(.{3,})ment$"), r"\1")]


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


class _NoTorch(importlib.abc.MetaPathFinder):
    """Fails imports of torch in the threads that ask it to (see torch_hidden)."""

    def __init__(self):
        self.active = threading.local()

    def find_spec(self, name, path=None, target=None):
        if getattr(self.active, "on", False) and name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


_NO_TORCH = _NoTorch()


@contextlib.contextmanager
def torch_hidden():
    """Imports inside see no torch. spaCy's thinc probes for torch when it is imported (and
    lemminflect imports spaCy whenever it is installed); answering questions needs neither torch
    nor its seconds of start-up and GBs of memory, so the probe must fail fast, as if torch were
    not installed. Only this thread's imports are refused: a placeholder in sys.modules would
    show other threads a torch that is None (an ingest running beside a first answer failed on
    it: "'NoneType' object has no attribute 'Tensor'"). A process that needs torch later still
    imports it normally."""
    if "torch" in sys.modules:
        yield
        return
    if _NO_TORCH not in sys.meta_path:
        sys.meta_path.insert(0, _NO_TORCH)
    previous = getattr(_NO_TORCH.active, "on", False)
    _NO_TORCH.active.on = True
    try:
        yield
    finally:
        _NO_TORCH.active.on = previous


LEMMA_TABLE_FORMAT = "v1"


@load_once
def _lemma_table() -> dict[str, str]:
    """word -> its dictionary lemma where that differs (a verb reading first: said -> say), for
    every word lemminflect knows. Derived once per machine into the cache folder and read from
    there (~30 ms), where lemminflect's own files take ~0.25 s and import spaCy with them — a
    cold `qa ask` that needs no spaCy, or loads it in another thread, does not wait for that."""
    import importlib.metadata
    import os
    import pickle
    from pathlib import Path

    from qa.cache import default_cache_dir, write_atomically

    version = importlib.metadata.version("lemminflect")
    path = Path(os.environ.get("QA_CACHE_DIR") or default_cache_dir()) / f"lemmas-{version}-{LEMMA_TABLE_FORMAT}.pickle"
    try:
        return pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ValueError):
        pass
    with torch_hidden():
        from lemminflect import Lemmatizer
    lemmatizer = Lemmatizer()
    words = set(lemmatizer._getLemmaDict()) | set(lemmatizer._getOverridesDict())
    table = {}
    for word in words:
        chosen = _dictionary_lemma(word, lemmatizer.getAllLemmas(word))
        if chosen != word:
            table[word] = chosen
    try:
        write_atomically(path, pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError:
        pass  # a read-only cache: derived again by the next process
    return table


def _dictionary_lemma(word: str, lemmas: dict) -> str:
    # A verb reading wins (said -> say, not the adjective "said"); else noun, else anything.
    for pos in ("VERB", "AUX", "NOUN", "ADJ", "ADV", "PROPN"):
        if pos in lemmas:
            return lemmas[pos][0]
    return word


@lru_cache(maxsize=100_000)
def lemma(word: str) -> str:
    """One comparable form per word family: said -> say, decided/decision -> decid, wars -> war."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    word = _lemma_table().get(word, word)
    for pattern, replacement in _DERIVATIONS:
        word = pattern.sub(replacement, word)
    return _stemmer().stemWord(word)


def content_lemmas(text: str) -> list[str]:
    """Lemmas of the words that carry content (no stop words, no question words)."""
    return [lemma(w) for w in _WORD_RE.findall(text) if w.lower().replace("’", "'") not in _STOP]


_NAME_OR_NUMBER_RE = re.compile(r"\b(?:[A-Z][a-zA-Z'’-]+\.?(?:\s+[A-Z][a-zA-Z'’-]+\.?)*|\d[\d,.]*\d|\d)")


def question_names(question: str) -> list[str]:
    """Names (runs of capitalised words: "Gen. Mark Milley") and numbers of a question, but its
    first word, which is capitalised anyway."""
    found = []
    for m in _NAME_OR_NUMBER_RE.finditer(question):
        words = m.group(0).split()
        if m.start() == 0:
            words = words[1:]
        if words:
            found.append(" ".join(words))
    return found


def name_in(name: str, text: str) -> bool:
    """A name is in a text when any of its words of three letters or more is (Milley for Gen. Mark
    Milley), a number when it is there as written."""
    lowered = text.lower()
    words = [re.sub(r"['’]s$", "", w.strip(".")).lower() for w in name.split()]
    words = [w for w in words if len(w) >= 3] or [name.lower()]
    return any(re.search(rf"\b{re.escape(w)}\b", lowered) for w in words)


def asked_lemmas(question: str, skip_names: bool = False) -> set[str]:
    """The question's content lemmas. `skip_names`: leave out its names and numbers (where there
    is anything else), so that what is asked about an entity counts, not the entity that every
    sentence around it repeats."""
    wanted = set(content_lemmas(question))
    if skip_names:
        names = {word for name in question_names(question) for word in content_lemmas(name)}
        wanted = (wanted - names) or wanted
    return wanted


def lemma_coverage(question: str, text: str, skip_names: bool = False) -> float:
    """Share of the question's content lemmas (asked_lemmas) that the text holds."""
    wanted = asked_lemmas(question, skip_names)
    return len(wanted & set(content_lemmas(text))) / len(wanted) if wanted else 0.0


# A sentence that opens with a pronoun ("He said …") needs the one before it to say who.
LEADING_PRONOUN_RE = re.compile(r"^\W*(?:he|she|they|it|his|her|their|its|this|these|those)\b", re.I)
