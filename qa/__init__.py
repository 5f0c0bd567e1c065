"""articles-qa: question answering over news articles, with cited sentences.

    import qa
    lib = qa.Library()                      # ./.qa-data, collection "articles"
    lib.ingest(["seeds/"])
    hits = lib.search("Who said GSOMIA scrapping was a misjudgment?", k=3)
    context = lib.passages("Who said GSOMIA scrapping was a misjudgment?", chars=1000)
"""

from typing import TYPE_CHECKING

__all__ = ["Library", "IngestReport", "Answer", "Citation", "Hit", "Sentence", "Filters", "Settings", "QAError", "InputError"]

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.errors import InputError, QAError
    from qa.answer.types import Answer, Citation
    from qa.library import IngestReport, Library
    from qa.store.filters import Filters
    from qa.retrieve.hybrid import Hit, Sentence

_HOMES = {
    "Library": "qa.library",
    "IngestReport": "qa.ingest.pipeline",
    "Answer": "qa.answer.types",
    "Citation": "qa.answer.types",
    "Hit": "qa.retrieve.hybrid",
    "Sentence": "qa.retrieve.hybrid",
    "Filters": "qa.store.filters",
    "Settings": "qa.config",
    "QAError": "qa.errors",
    "InputError": "qa.errors",
}


def __getattr__(name: str):
    # Lazy: `import qa` stays cheap; chromadb loads only when a Library is made (torch only for a torch encoder).
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
