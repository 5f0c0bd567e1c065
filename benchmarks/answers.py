"""End-to-end answers on SQuAD 2.0 dev (half) with the configured LLM backend (local by default).

    python -m benchmarks answers [--answerable 300] [--unanswerable 200] [--seed 0]

Reports token F1 / exact match on answerable questions (a refusal scores 0), the share of
unanswerable questions correctly refused, seconds per answer and first-token latency."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from .report import save
from .squad import DEFAULT_SQUAD, load_squad, sample, write_jsonl


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks answers", description=__doc__)
    parser.add_argument("--squad", default=str(DEFAULT_SQUAD))
    parser.add_argument("--answerable", type=int, default=300)
    parser.add_argument("--unanswerable", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "answers.json"))
    args = parser.parse_args(argv)

    from qa.config import Settings
    from qa.library import Library
    from qa.metrics import exact_match, percentile, token_f1

    records, questions = load_squad(Path(args.squad))
    chosen = sample(questions, args.answerable, args.seed) + sample(questions, args.unanswerable, args.seed, unanswerable=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        lib = Library(Path(tmp) / "db", "squad", settings=settings)
        report = lib.ingest([write_jsonl(records, Path(tmp))])
        assert not report.rejected, report.rejected
        lib.ask("warm up: what is this?")
        started = time.perf_counter()
        for q in chosen:
            answer = lib.ask(q.question)
            rows.append({
                "id": q.id, "question": q.question, "unanswerable": q.unanswerable, "gold": q.answers,
                "answer": answer.text, "refused": answer.refused, "grounded": answer.grounded,
                "f1": 0.0 if answer.refused or q.unanswerable else token_f1(answer.text, q.answers),
                "em": 0.0 if answer.refused or q.unanswerable else exact_match(answer.text, q.answers),
                "total_s": answer.timings.get("total", 0.0),
                "first_token_s": answer.timings.get("first_token"),
            })
        wall = time.perf_counter() - started
    answerable = [r for r in rows if not r["unanswerable"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    totals = [r["total_s"] for r in rows]
    firsts = [r["first_token_s"] for r in rows if r["first_token_s"] is not None]
    summary = {
        "backend": lib.engine.llm.name,
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "f1": statistics.mean(r["f1"] for r in answerable) if answerable else None,
        "exact_match": statistics.mean(r["em"] for r in answerable) if answerable else None,
        "answered_share": statistics.mean(not r["refused"] for r in answerable) if answerable else None,
        "refusal_accuracy": statistics.mean(r["refused"] for r in unanswerable) if unanswerable else None,
        "answer_s_p50": percentile(totals, 50), "answer_s_p95": percentile(totals, 95),
        "first_token_s_p50": percentile(firsts, 50) if firsts else None,
        "first_token_s_p95": percentile(firsts, 95) if firsts else None,
        "wall_s": wall,
    }
    print(json.dumps(summary, indent=2))
    save({"summary": summary, "rows": rows}, args.out)
