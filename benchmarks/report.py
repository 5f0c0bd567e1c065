"""What every benchmark does with its figures once printed: the machine they were measured on
(CPU flags, the encoder chosen there), then a JSON file under benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path


def machine_line() -> str:
    """CPU, the flags that decide encoder speed, and the encoder this machine chose (measuring it
    now if it never has)."""
    from qa.config import get_settings
    from qa.models.embeddings import MiniLMEmbedder
    from qa.models.encoders import cpu_flags, cpu_name

    chosen = MiniLMEmbedder(cache_dir=get_settings().cache_dir).encoders.measurements()["chosen"]
    return f"CPU: {cpu_name()}, flags {' '.join(cpu_flags()) or 'none of avx2/avx512/amx'}; encoder chosen here: {chosen}"


def save(result: dict, out: str) -> None:
    if "machine" not in result:
        result["machine"] = machine_line()
        print(result["machine"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {out}")
