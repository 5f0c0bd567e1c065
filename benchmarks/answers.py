"""End-to-end answers on SQuAD 2.0 dev (half) with the configured LLM backend (local by default).

    python -m benchmarks answers [--answerable 300] [--unanswerable 200] [--seed 0]
    python -m benchmarks answers --natural PATH/newsqa-dev-b.json [--stories 150] [--answerable 600] [--out-of-library 60]

The same per-question evaluation as `qa eval` (evals/run.py) on a fixed sample: useful answers
(span / quote / fact holding a gold answer), false refusals, the share of unanswerable questions
refused, token F1 overall and of span answers, answers by kind, first-token and total latency.

--natural: questions people ask about news (a SQuAD-format file such as NewsQA; it stays out of
the repository): a library of --stories sampled stories, --answerable of their questions, and
--out-of-library questions about stories left out (answer strings absent from the library), with
useful answers, span answers right, out-of-library refusals, results by question word, where the
gold answer is in the evidence (top sentences, passages at 1,500 / 2,500 chars) and latency."""

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
    parser.add_argument("--natural", help="A SQuAD-format file of natural news questions (NewsQA), by path.")
    parser.add_argument("--stories", type=int, default=150)
    parser.add_argument("--out-of-library", type=int, default=60)
    parser.add_argument("--out", help="default: benchmarks/results/answers.json (answers-natural.json with --natural)")
    llm = parser.add_argument_group("the LLM that answers (default: the QA_* settings, i.e. the local Gemma)")
    llm.add_argument("--backend", help="local | openai | openai-compatible")
    llm.add_argument("--local-model", help="gemma-3-270m | qwen2.5-coder-1.5b | auto | a .gguf path")
    llm.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    llm.add_argument("--model", help="the server's model name")
    llm.add_argument("--api", help="chat | completions")
    llm.add_argument("--min-answerability-chat", type=float,
                     help="pre-model refusal threshold of the chat path (0: the model sees every question; to fit it)")
    llm.add_argument("--min-answerability-quote-chat", type=float,
                     help="at or above it a chat model's refusal is quoted over (2: never; to fit it)")
    args = parser.parse_args(argv)

    from evals.datasets import load_dataset
    from evals.run import evaluate, summarise
    from qa.config import get_settings
    from qa.library import Library

    with tempfile.TemporaryDirectory() as tmp:
        if args.natural:
            dataset = load_dataset(Path(args.natural), None, Path(tmp), stories=args.stories,
                                   out_of_library=args.out_of_library, seed=args.seed)
            import random

            answerable = [i for i in dataset.items if not i.unanswerable]
            chosen = random.Random(args.seed).sample(answerable, min(args.answerable, len(answerable)))
            chosen += [i for i in dataset.items if i.unanswerable]
        else:
            _, questions = load_squad(Path(args.squad))
            picked = sample(questions, args.answerable, args.seed) + sample(questions, args.unanswerable, args.seed, unanswerable=True)
            dataset = load_dataset(Path(args.squad), None, Path(tmp))  # articles as JSONL + gold spans in article offsets
            by_id = {item.id: item for item in dataset.items}
            chosen = [by_id[q.id] for q in picked]
        settings = get_settings(llm_backend=args.backend, local_model=args.local_model, llm_base_url=args.base_url,
                                llm_model=args.model, llm_api=args.api, min_answerability_chat=args.min_answerability_chat,
                                min_answerability_quote_chat=args.min_answerability_quote_chat)
        lib = Library(Path(tmp) / "db", "squad", settings=settings)
        report = lib.ingest(dataset.corpus)
        assert not report.rejected, report.rejected
        lib.ask("warm up: what is this?")
        started = time.perf_counter()
        rows = [evaluate(lib, item) for item in chosen]
        wall = time.perf_counter() - started
        backend = lib.engine.llm.name
    summary = {"backend": backend, "seed": args.seed, "wall_s": wall} | summarise(rows)
    keys = ("useful", "answer_holds_gold", "span_right", "false_refusals", "refusal_accuracy", "refused_by_unanswerable_kind",
            "refused_before_model", "grounded_but_wrong", "rejected_by_grounding",
            "f1", "span_f1", "exact_match", "top1_holds", "top3_holds", "passages_1500", "passages_2500",
            "first_token_s_p50", "first_token_s_p95", "total_s_p50", "total_s_p95")
    print(json.dumps({k: summary[k] for k in ("backend", "answerable", "unanswerable", *keys)}
                     | {"kinds": summary["kinds"], "question_words": summary["question_words"]}, indent=2))
    out = args.out or str(Path(__file__).parent / "results" / ("answers-natural.json" if args.natural else "answers.json"))
    save({"summary": summary, "rows": rows}, out)
