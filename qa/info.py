"""What `qa info` reports: versions, CPU features, the encoder and LLM in use, model files, the
store. Read-only and cheap: it never exports, measures or loads a model (it says when something
has not happened yet) — except `--measure-llm`, which times the local model(s) here and caches it."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

from qa.config import Settings

PACKAGES = (
    "articles-qa", "chromadb", "llama-index-core", "onnxruntime", "tokenizers", "torch",
    "sentence-transformers", "llama-cpp-python", "gradio", "openai",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _file(path: Path | str | None) -> dict | None:
    if not path:
        return None
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size if path.exists() else None}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def collect(settings: Settings, measure_llm: bool = False) -> dict:
    from qa.models.encoders import cpu_cores, cpu_flags, cpu_name, local_encoders, minilm_dir
    from qa.cache import default_cache_dir
    from qa.models.onnx_export import FP32_FILE, INT8_FILE, MANIFEST_FILE, export_folder

    cache_dir = Path(settings.cache_dir or default_cache_dir())
    info: dict = {
        "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        "cpu": {"name": cpu_name(), "flags": cpu_flags(), "cores": cpu_cores()},
        "cache_dir": str(cache_dir),
    }

    # Encoder: what this machine measured (if it has), and the files behind it.
    encoder: dict = {"embedder": settings.embedder, "requested": settings.embed_precision}
    if settings.embedder == "minilm":
        model_dir = minilm_dir()
        onnx_dir = export_folder(model_dir, cache_dir)
        exported_already = (onnx_dir / MANIFEST_FILE).exists()
        encoder["model_dir"] = str(model_dir)
        encoder["onnx_files"] = (
            [_file(onnx_dir / n) for n in (FP32_FILE, INT8_FILE)] if exported_already else "not exported yet (the first use exports them)"
        )
        measured = local_encoders(cache_dir).cached_measurements() if exported_already else None
        encoder["chosen_here"] = measured["chosen"] if measured else "not measured yet (the first ingest measures)"
        if measured:
            encoder["measured"] = measured["variants"]
    else:
        encoder["model"] = settings.embed_model
        encoder["base_url"] = settings.embed_base_url
    info["encoder"] = encoder

    # LLM: backend and model, never a key.
    llm: dict = {"backend": settings.llm_backend}
    if settings.llm_backend == "local":
        from qa.errors import BackendError
        from qa.models.llm_speed import cached_speed
        from qa.models.local_models import INSTRUCT, MODELS, file_of

        from qa.models.llms import cpu_features_in_use, load_cpu_backend

        llm["local_model"] = settings.local_model
        # Which of llama.cpp's CPU builds this machine runs (make builds them all; the best loads).
        llm["llama_cpp_cpu"] = {"variant": load_cpu_backend(), "features": cpu_features_in_use()}
        names = list(MODELS) if settings.local_model == "auto" else [settings.local_model]
        if settings.local_model == "auto":
            llm["auto_rule"] = f"{INSTRUCT} where its measured answer time here is <= {settings.local_model_budget_s:g} s, else gemma-3-270m"
        for name in names:
            entry: dict = {"description": MODELS[name].description if name in MODELS else "a GGUF file"}
            try:
                path = file_of(name, settings.cache_dir)
                entry["file"] = _file(path) if path.exists() else "not assembled yet (the first answer assembles it)"
            except (ImportError, OSError, BackendError) as exc:
                entry["file"] = f"unavailable ({exc})"
            speed = cached_speed(settings, name)
            entry["speed_here"] = speed or "not measured yet (qa info --measure-llm measures it)"
            llm[name] = entry
        states = sorted((cache_dir / "llm-prefix").glob("*.state")) if (cache_dir / "llm-prefix").exists() else []
        llm["prefix_state"] = _file(states[-1]) if states else "not cached yet (the first question writes it)"
    else:
        llm["model"] = settings.llm_model
        llm["base_url"] = settings.llm_base_url or "https://api.openai.com/v1"
        llm["api"] = settings.llm_api or "chat"
    if measure_llm and settings.llm_backend == "local":
        from qa.models.llm_speed import measure

        for name in [n for n in llm if isinstance(llm[n], dict) and "speed_here" in llm[n]]:
            llm[name]["speed_here"] = measure(settings, name)
    info["llm"] = llm

    # Store: where, how much, and which encoder wrote it; opened read-only (nothing is created).
    location = settings.chroma_url or str(Path(settings.data_dir).resolve())
    store: dict = {"location": location, "collection": settings.collection}
    if settings.chroma_url or Path(settings.data_dir).exists():
        from qa.store.chroma import EMBEDDER_KEY, ENCODER_KEY, REGISTRY_SUFFIX, encoder_of, make_client

        client = make_client(location)
        try:
            chunks = client.get_collection(settings.collection, embedding_function=None)
            registry = client.get_collection(settings.collection + REGISTRY_SUFFIX, embedding_function=None)
        except Exception:  # chromadb's "does not exist" error type differs by version and mode
            chunks = registry = None
        if chunks is None:
            store["note"] = "no such collection yet (qa ingest creates it)"
        else:
            meta = chunks.metadata or {}
            store["articles"] = registry.count()
            store["chunks"] = chunks.count()
            store["embedder"] = meta.get(EMBEDDER_KEY)
            encoder = encoder_of(chunks)
            legacy = encoder and not meta.get(ENCODER_KEY)
            store["encoder"] = f"{encoder} (written before encoders were recorded)" if legacy else encoder or "none yet"
        if not settings.chroma_url:
            store["bytes_on_disk"] = _folder_bytes(Path(settings.data_dir))
    else:
        store["note"] = "no store yet (qa ingest creates it)"
    info["store"] = store
    return info

