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
from qa.retrieve.hybrid import Hit

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
        {"unanswerable": False, "refused": False, "answer_kind": "span", "em": 1.0, "f1": 1.0, "contains": True,
         "useful": True, "grounded": 1.0, "citations": [{}], "retrieval_rank": 1, "tokens": 3,
         "timings": {"total": 1.0, "retrieve": 0.1}},
        {"unanswerable": False, "refused": True, "answer_kind": "not_found", "em": 0.0, "f1": 0.0, "contains": False,
         "useful": False, "grounded": 0.0, "citations": [], "retrieval_rank": 4, "tokens": 5,
         "timings": {"total": 3.0, "retrieve": 0.3}},
        {"unanswerable": False, "refused": False, "answer_kind": "quote", "em": 0.0, "f1": 0.2, "contains": True,
         "useful": True, "grounded": 1.0, "citations": [{}], "retrieval_rank": 1, "tokens": 0,
         "timings": {"total": 1.0, "retrieve": 0.1}},
        {"unanswerable": True, "refused": True, "answer_kind": "not_found", "refusal_correct": True, "grounded": 0.0,
         "citations": [], "retrieval_rank": None, "tokens": 1, "timings": {"total": 2.0, "retrieve": 0.2}},
        {"unanswerable": True, "refused": False, "answer_kind": "quote", "refusal_correct": False, "grounded": 0.5,
         "citations": [{}], "retrieval_rank": None, "tokens": 3, "timings": {"total": 4.0, "retrieve": 0.4}},
    ]
    s = summarise(rows)
    assert s["f1"] == pytest.approx(1.2 / 3) and s["span_f1"] == 1.0 and s["exact_match"] == pytest.approx(1 / 3)
    assert s["useful"] == pytest.approx(2 / 3) and s["false_refusals"] == pytest.approx(1 / 3)
    assert s["answered_share"] == pytest.approx(2 / 3) and s["refusal_accuracy"] == 0.5
    assert s["kinds"]["quote"] == {"answers": 2, "answerable": 1, "useful": 1.0, "f1": 0.2, "unanswerable": 1}
    assert s["kinds"]["not_found"]["answers"] == 2 and s["kinds"]["fact"]["answers"] == 0
    assert s["recall_at_k"]["1"] == pytest.approx(2 / 3) and s["recall_at_k"]["4"] == 1.0
    assert s["mrr"] == pytest.approx((1 + 0.25 + 1) / 3)
    assert s["grounded"] == pytest.approx(2.5 / 3) and s["cited_share"] == 1.0  # over the three answered rows
    assert s["total_s_p50"] == 2.0


def test_report_lists_the_failed_questions():
    from evals.run import failure_lines

    rows = [
        {"question": "Who won?", "unanswerable": False, "useful": False, "refused": True, "gold": ["Ann"],
         "answer": "The articles don't say.", "answer_kind": "not_found", "retrieval_rank": 2},
        {"question": "Who lost?", "unanswerable": False, "useful": True, "refused": False, "gold": ["Bo"],
         "answer": "Bo", "answer_kind": "span", "retrieval_rank": 1},
        {"question": "Who | tied?", "unanswerable": True, "useful": False, "refused": False, "gold": [],
         "answer": "Cy", "answer_kind": "span", "retrieval_rank": None},
    ]
    lines = failure_lines(rows)
    assert lines[0] == "## Failed questions (2)"
    assert "| Who won? | Ann | The articles don't say. | not_found | 2 |" in lines
    assert "| Who \\| tied? | (unanswerable) | Cy | span | — |" in lines
    assert not any("Who lost?" in line for line in lines)


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
    # who, who, follow-up, article fact, why, unanswerable
    lines += [by_id[i] for i in ("seed-01", "seed-06", "seed-26", "seed-35", "seed-38", "seed-28")]
    dataset.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    run = tmp_path / "run"
    result = subprocess.run([QA, "eval", str(dataset), "--out", str(run), "--min-f1", "1.01"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "error: regression gate: token F1" in result.stderr
    for name in ("results.jsonl", "summary.json", "report.md", "f1.png", "latency.png", "recall_at_k.png", "refusal_curve.png"):
        assert (run / name).stat().st_size > 0, name
    rows = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    summary = json.loads((run / "summary.json").read_text())["summary"]
    report = (run / "report.md").read_text()
    answerable = [r for r in rows if not r["unanswerable"]]
    f1 = statistics.mean(r["f1"] for r in answerable)
    refusal = statistics.mean(float(r["refused"]) for r in rows if r["unanswerable"])
    recall5 = statistics.mean(float(bool(r["retrieval_rank"]) and r["retrieval_rank"] <= 5) for r in answerable)
    assert summary["f1"] == pytest.approx(f1) and f"| token F1 (all answerable; a refusal scores 0) | {f1:.3f} |" in report
    useful = statistics.mean(float(r["useful"]) for r in answerable)
    assert summary["useful"] == pytest.approx(useful) and f"{useful:.3f} |" in report
    kinds = {r["id"]: r["answer_kind"] for r in rows}
    assert kinds["seed-35"] == "fact" and kinds["seed-38"] == "quote" and kinds["seed-28"] == "not_found"
    assert "## Answers by kind" in report and "## Failed questions" in report
    assert summary["refusal_accuracy"] == pytest.approx(refusal) and f"| refusal accuracy (unanswerable) | {refusal:.3f} |" in report
    assert summary["recall_at_k"]["5"] == pytest.approx(recall5)
    assert any("Motegi" in r["answer"] for r in rows if r["id"] == "seed-01")
    assert all(r["answer"] == "The articles don't say." for r in rows if r["id"] == "seed-28")
    assert [name for name, a, b, delta in compare(run, run) if delta not in (0, 0.0, None)] == []


def _row(score, *, unanswerable=False, kind=None, useful=False, refused=False, model_refused=False, quote_useful=False):
    row = {"answerability": score, "unanswerable": unanswerable, "kind": kind, "useful": useful, "refused": refused}
    if model_refused:
        row |= {"model_refused": 1.0, "refusal_quote_useful": quote_useful}
    return row


def test_chat_fit_quotes_over_refusals_only_where_squad_refusals_do_not_suffer():
    """The chat path's two thresholds from runs where the model answered everything: the gate
    keeps the out-of-library refusals; a quote over the model's refusal is taken only from a score
    where it does not overrule a right refusal of a same-paragraph SQuAD question."""
    from evals.chat_fit import NEVER, choose, outcome

    natural = [_row(0.9, useful=True), _row(0.8, refused=True, model_refused=True, quote_useful=True),
               _row(0.6, refused=True, model_refused=True, quote_useful=True), _row(0.1, useful=True),
               *[_row(0.05, unanswerable=True, kind="out_of_library") for _ in range(9)],
               _row(0.5, unanswerable=True, kind="out_of_library", useful=False)]
    assert outcome(natural, 0.0)["out_of_library_refused"] == 0.0
    (gate, quote), figures = choose(natural, None, 0.9)
    assert 0.05 < gate <= 0.1 + 1e-6 and quote <= 0.6 + 1e-6  # both quotes help: the lowest score that takes them
    assert figures == outcome(natural, gate, quote) and figures["useful"] == 1.0 and figures["out_of_library_refused"] == 0.9
    squad = [_row(0.7, useful=True), _row(0.65, unanswerable=True, kind="unanswerable", refused=True, model_refused=True)]
    (gate, quote), figures = choose(natural, squad, 0.9)
    assert 0.65 < quote <= 0.8 + 1e-6 and figures["useful"] == 0.75  # the 0.6 quote would answer the SQuAD unanswerable
    assert outcome(squad, gate, quote)["unanswerable_refused"] == outcome(squad, gate, NEVER)["unanswerable_refused"] == 1.0
