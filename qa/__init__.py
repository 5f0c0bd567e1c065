"""articles-qa: question answering over news articles, with cited sentences.

    import qa
    lib = qa.Library()                      # ./.qa-data, collection "articles"
    lib.ingest(["seeds/"])
    hits = lib.search("Who said GSOMIA scrapping was a misjudgment?", k=3)
    context = lib.passages("Who said GSOMIA scrapping was a misjudgment?", chars=1000)
"""

from typing import TYPE_CHECKING

__all__ = ["Library", "IngestReport", "Hit", "Sentence", "Filters", "Settings", "QAError", "InputError"]

if TYPE_CHECKING:
    from .config import Settings
    from .errors import InputError, QAError
    from .library import IngestReport, Library
    from .retrieval import Filters, Hit, Sentence

_HOMES = {
    "Library": "library",
    "IngestReport": "library",
    "Hit": "retrieval",
    "Sentence": "retrieval",
    "Filters": "retrieval",
    "Settings": "config",
    "QAError": "errors",
    "InputError": "errors",
}


def __getattr__(name: str):
    # Lazy: `import qa` stays cheap; chromadb loads only when a Library is made (torch only for a torch encoder).
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
