"""The cache folder (QA_CACHE_DIR): exported ONNX files, the per-machine encoder choice, the local
model's prompt-prefix state. Where it is, and how a file lands in it whole."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Where QA_CACHE_DIR points when unset: $XDG_CACHE_HOME/articles-qa, else ~/.cache/articles-qa."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "articles-qa"


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write beside the target, then rename over it: a concurrent reader sees the old file or the
    new one, never half of one. Raises OSError where the folder cannot be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    if isinstance(data, bytes):
        partial.write_bytes(data)
    else:
        partial.write_text(data)
    os.replace(partial, path)
