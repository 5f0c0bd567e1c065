"""End-to-end answers on SQuAD 2.0 dev (half) with the configured LLM backend (local by default).

    python -m benchmarks answers [--answerable 300] [--unanswerable 200] [--seed 0]

The same per-question evaluation as `qa eval` (evals/run.py) on a fixed sample: useful answers
(span / quote / fact holding a gold answer), false refusals, the share of unanswerable questions
refused, token F1 overall and of span answers, answers by kind, first-token and total latency."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .report import save
from .squad import DEFAULT_SQUAD, load_squad, sample


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks answers", description=__doc__)
    parser.add_argument("--squad", default=str(DEFAULT_SQUAD))
    parser.add_argument("--answerable", type=int, default=300)
    parser.add_argument("--unanswerable", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "answers.json"))
    args = parser.parse_args(argv)

    from evals.datasets import load_dataset
    from evals.run import evaluate, summarise
    from qa.config import Settings
    from qa.library import Library

    _, questions = load_squad(Path(args.squad))
    chosen = sample(questions, args.answerable, args.seed) + sample(questions, args.unanswerable, args.seed, unanswerable=True)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_dataset(Path(args.squad), None, Path(tmp))  # articles as JSONL + gold spans in article offsets
        by_id = {item.id: item for item in dataset.items}
        lib = Library(Path(tmp) / "db", "squad", settings=Settings())
        report = lib.ingest(dataset.corpus)
        assert not report.rejected, report.rejected
        lib.ask("warm up: what is this?")
        started = time.perf_counter()
        rows = [evaluate(lib, by_id[q.id]) for q in chosen]
        wall = time.perf_counter() - started
        backend = lib.engine.llm.name
    summary = {"backend": backend, "seed": args.seed, "wall_s": wall} | summarise(rows)
    keys = ("useful", "false_refusals", "refusal_accuracy", "f1", "span_f1", "exact_match",
            "first_token_s_p50", "first_token_s_p95", "total_s_p50", "total_s_p95")
    print(json.dumps({k: summary[k] for k in ("backend", "answerable", "unanswerable", *keys)} | {"kinds": summary["kinds"]}, indent=2))
    save({"summary": summary, "rows": rows}, args.out)
