"""Evaluation: metric logic by hand, and a small real run whose files agree with each other."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from evals.datasets import EvalItem, load_dataset
from evals.run import compare, contains_gold, retrieval_rank, summarise
from qa.errors import InputError
from qa.retrieval import Hit

from .conftest import ROOT

QA = str(Path(sys.executable).parent / "qa")


def hit(text, start=0, article="a1"):
    return Hit(text=text, score=1.0, title="t", article_id=article, start=start, end=start + len(text))


def test_retrieval_rank_by_span_support_and_article():
    spans = EvalItem("q", "?", ["Paris"], article="a1", spans=[(105, 110)])
    assert retrieval_rank(spans, [hit("x" * 50, 0), hit("y" * 50, 100)]) == 2
    assert retrieval_rank(spans, [hit("y" * 50, 100, article="other")]) is None
    support = EvalItem("q", "?", ["Paris"], support="It is  in Paris.")
    assert retrieval_rank(support, [hit("Nothing."), hit("They said so. It is in Paris. More.")]) == 2
    answer_only = EvalItem("q", "?", ["Paris"])
    assert retrieval_rank(answer_only, [hit("paris, France")]) == 1


def test_contains_gold_and_summary_logic():
    assert contains_gold("It was the Eiffel Tower, in 1889.", ["eiffel tower"])
    assert not contains_gold("The articles don't say.", ["1889"])
    rows = [
        {"unanswerable": False, "refused": False, "em": 1.0, "f1": 1.0, "contains": True, "grounded": 1.0,
         "citations": [{}], "retrieval_rank": 1, "tokens": 3, "timings": {"total": 1.0, "retrieve": 0.1}},
        {"unanswerable": False, "refused": True, "em": 0.0, "f1": 0.0, "contains": False, "grounded": 0.0,
         "citations": [], "retrieval_rank": 4, "tokens": 5, "timings": {"total": 3.0, "retrieve": 0.3}},
        {"unanswerable": True, "refused": True, "refusal_correct": True, "grounded": 0.0, "citations": [],
         "retrieval_rank": None, "tokens": 1, "timings": {"total": 2.0, "retrieve": 0.2}},
        {"unanswerable": True, "refused": False, "refusal_correct": False, "grounded": 0.5, "citations": [{}],
         "retrieval_rank": None, "tokens": 3, "timings": {"total": 4.0, "retrieve": 0.4}},
    ]
    s = summarise(rows)
    assert (s["f1"], s["exact_match"], s["answered_share"], s["refusal_accuracy"]) == (0.5, 0.5, 0.5, 0.5)
    assert s["recall_at_k"]["1"] == 0.5 and s["recall_at_k"]["3"] == 0.5 and s["recall_at_k"]["4"] == 1.0
    assert s["mrr"] == (1 + 0.25) / 2
    assert s["grounded"] == 0.75 and s["cited_share"] == 1.0  # over the two answered rows
    assert s["total_s_p50"] == 2.0 and s["total_s_p95"] == 4.0


def test_dataset_errors_name_the_line(tmp_path):
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"corpus": "."}\n{"question": "Who?", "answers": []}\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: field 'answers' is empty for an answerable question"):
        load_dataset(bad, None, tmp_path)
    assert len(load_dataset(ROOT / "evals/datasets/seed.jsonl", None, tmp_path).items) >= 30


def test_small_seed_eval_writes_consistent_files(tmp_path):
    dataset = tmp_path / "mini.jsonl"
    lines = [{"corpus": str(ROOT / "seeds")}]
    seed_items = [json.loads(l) for l in (ROOT / "evals/datasets/seed.jsonl").read_text().splitlines()[1:]]
    by_id = {i["id"]: i for i in seed_items}
    lines += [by_id["seed-01"], by_id["seed-06"], by_id["seed-26"], by_id["seed-28"]]  # who, who, follow-up, unanswerable
    dataset.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    run = tmp_path / "run"
    result = subprocess.run([QA, "eval", str(dataset), "--out", str(run), "--min-f1", "1.01"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "error: regression gate: token F1" in result.stderr
    for name in ("results.jsonl", "summary.json", "report.md", "f1.png", "latency.png", "recall_at_k.png"):
        assert (run / name).stat().st_size > 0, name
    rows = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    summary = json.loads((run / "summary.json").read_text())["summary"]
    report = (run / "report.md").read_text()
    answerable = [r for r in rows if not r["unanswerable"]]
    f1 = statistics.mean(r["f1"] for r in answerable)
    refusal = statistics.mean(float(r["refused"]) for r in rows if r["unanswerable"])
    recall5 = statistics.mean(float(bool(r["retrieval_rank"]) and r["retrieval_rank"] <= 5) for r in answerable)
    assert summary["f1"] == pytest.approx(f1) and f"| token F1 | {f1:.3f} |" in report
    assert summary["refusal_accuracy"] == pytest.approx(refusal) and f"| refusal accuracy (unanswerable) | {refusal:.3f} |" in report
    assert summary["recall_at_k"]["5"] == pytest.approx(recall5)
    assert any("Motegi" in r["answer"] for r in rows if r["id"] == "seed-01")
    assert all(r["answer"] == "The articles don't say." for r in rows if r["id"] == "seed-28")
    assert [name for name, a, b, delta in compare(run, run) if delta not in (0, 0.0, None)] == []
