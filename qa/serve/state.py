"""What one server holds for every visitor, API client and page alike: its settings, tokens, and
one Library per collection it serves; each visitor's own choices make a new answer chain over a
shared library, never a change to it."""

from __future__ import annotations

import threading

from qa.config import Settings
from qa.errors import NotFound
from qa.library import Library
from qa.serve.auth import Tokens


class ServerState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.libraries: dict[str, Library] = {}
        self.tokens = Tokens.from_settings(settings)
        self._opening = threading.Lock()  # the warm-up thread and the first request open the same library

    def collections(self) -> list[str]:
        """The default collection, then those QA_COLLECTIONS lists."""
        names = [self.settings.collection] + [n.strip() for n in self.settings.collections.split(",") if n.strip()]
        return list(dict.fromkeys(names))

    def library(self, collection: str | None = None) -> Library:
        name = collection or self.settings.collection
        if name not in self.collections():
            raise NotFound(f"unknown collection '{name}' (this server has: {', '.join(self.collections())})")
        with self._opening:
            if name not in self.libraries:
                location = self.settings.chroma_url or self.settings.data_dir
                self.libraries[name] = Library(location, name, settings=self.settings, background_index=True)
        return self.libraries[name]

    def warm_up(self) -> None:
        """Load what a first question needs (question encoder, search index, local model and its
        prompt prefix) while the server starts, so the first visitor does not wait for it."""
        try:
            library = self.library()
            library.search("warm up", k=1)
            getattr(library.engine.llm, "model", None)  # a local model loads; a server backend has none
        except Exception:  # noqa: BLE001 - the first question reports whatever is wrong, with context
            pass

    def poll_feeds_forever(self, interval: float = 30.0, stop: threading.Event | None = None) -> None:
        """Poll the due feeds of the collections opened so far (the default one at least), every
        `interval` seconds: a `qa serve` keeps its archive current without a `qa watch` beside it
        (both may run: a feed one process is polling, the other skips)."""
        from qa.ingest.watch import poll_feeds

        stop = stop or threading.Event()
        while not stop.wait(interval):
            for name in list(dict.fromkeys([self.settings.collection, *self.libraries])):
                try:
                    poll_feeds(self.library(name), report=lambda line: print(f"feeds [{name}] {line}", flush=True))
                except Exception as exc:  # noqa: BLE001 - a poller must outlive one bad round
                    print(f"feeds [{name}] error: {exc}", flush=True)

    def engine_for(self, collection: str | None = None, *, backend: str = "", model: str = "", base_url: str = "",
                   top_k: int = 0):
        """The answer chain for one visitor's choices (blank: the server's own): a new Engine over
        the shared collection, nothing shared mutated (another visitor keeps their own choices)."""
        from qa.answer.chain import Engine
        from qa.models.backends import for_visitor, get_llm

        settings = for_visitor(self.settings, backend, model, base_url)
        settings = settings.model_copy(update={"answer_k": int(top_k or self.settings.answer_k)})
        return Engine(self.library(collection), get_llm(settings), settings)
