"""What every benchmark does with its figures once printed: a JSON file under benchmarks/results/."""

from __future__ import annotations

import json
from pathlib import Path


def save(result: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {out}")
