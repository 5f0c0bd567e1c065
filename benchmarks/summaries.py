"""Whole-article and over-time answers with the configured backend (local by default): how long a
summary, key points, a tl;dr, a topic's latest and a dated question take.

    python -m benchmarks summaries [--repeats 5]

Over a fresh store holding seeds/ and the dated articles of evals/datasets/timeline/, every
article is summarised at each length (its headline in quotes names it) and the topic and date
questions below are asked, `--repeats` times each after one warm-up round; prints p50 / p95 / max
per kind with the CPU flags."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from .report import machine_line, save

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = {"summary": 'What is "{title}" about?', "key_points": 'Give me the key points of "{title}".', "tldr": 'tl;dr of "{title}"'}
OVER_TIME = {
    "latest": ["What's the latest on the ferry strike?", "What's the latest on GSOMIA?", "How did the ferry strike develop?"],
    "dated": ["What happened on March 6, 2024?", "What happened in March 2024?", "What happened on Tuesday?",
              "What did Motegi say in November 2019?"],
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks summaries", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "summaries.json"))
    args = parser.parse_args(argv)

    from qa.library import Library
    from qa.answer.metrics import percentile

    with tempfile.TemporaryDirectory() as tmp:
        lib = Library(Path(tmp) / "db", "summaries")
        lib.ingest([ROOT / "seeds", ROOT / "evals" / "datasets" / "timeline"])
        questions = {kind: [form.format(title=r.title) for r in lib.articles()] for kind, form in LENGTHS.items()} | OVER_TIME
        for group in questions.values():  # warm-up: the model, the index, the first registry read
            for question in group:
                lib.ask(question)
        seconds: dict[str, list[float]] = {kind: [] for kind in questions}
        kinds: dict[str, set] = {kind: set() for kind in questions}
        for _ in range(args.repeats):
            for kind, group in questions.items():
                for question in group:
                    started = time.perf_counter()
                    answer = lib.ask(question)
                    seconds[kind].append(time.perf_counter() - started)
                    kinds[kind].add(answer.kind)
        backend = lib.engine.llm.name
    result = {"backend": backend, "repeats": args.repeats, "kinds": {}}
    print(f"backend {backend}, {args.repeats} repeats after a warm-up round")
    print(f"{'question kind':<12} {'asked':>6} {'p50 s':>8} {'p95 s':>8} {'max s':>8}  answer kinds")
    for kind, values in seconds.items():
        row = {"asked": len(values), "p50_s": percentile(values, 50), "p95_s": percentile(values, 95), "max_s": max(values),
               "answer_kinds": sorted(kinds[kind])}
        result["kinds"][kind] = row
        print(f"{kind:<12} {row['asked']:>6} {row['p50_s']:>8.3f} {row['p95_s']:>8.3f} {row['max_s']:>8.3f}  {', '.join(row['answer_kinds'])}")
    result["machine"] = machine_line()
    print(result["machine"])
    save(result, args.out)


if __name__ == "__main__":
    main()
