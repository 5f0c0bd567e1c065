"""`qa eval`: answer a dataset end to end in a fresh temporary collection and write a run folder:
results.jsonl (every question), summary.json (aggregates) and report.md (tables + PNG plots)."""

from __future__ import annotations

import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from qa.answer.types import KINDS
from qa.answer.metrics import exact_match, normalise_answer, percentile, token_f1

from .datasets import EvalItem, load_dataset

MAX_K = 10
PASSAGE_CHARS = (1500, 2500)
LATENCIES = ("retrieve", "generate", "first_token", "total")


def retrieval_rank(item: EvalItem, hits) -> int | None:
    """1-based rank of the first hit holding the gold span, the supporting sentence, or (failing
    both) a gold answer, in the right article when the item names one."""
    for rank, hit in enumerate(hits, start=1):
        if item.article and hit.article_id != item.article:
            continue
        if item.spans:
            if any(hit.start <= s and e <= hit.end for s, e in item.spans):
                return rank
        elif item.support:
            if " ".join(item.support.split()) in " ".join(hit.text.split()):
                return rank
        elif any(a and a.lower() in hit.text.lower() for a in item.answers):
            return rank
    return None


def contains_gold(answer: str, golds: list[str]) -> bool:
    text = normalise_answer(answer)
    return any(normalise_answer(g) and normalise_answer(g) in text for g in golds)


def meets_expectation(expect: dict, answer, golds: list[str]) -> bool:
    """Whether an answer is what an item's "expect" asks: its kind; the articles its citations
    come from (all of "articles", or "any" of them; "only" those; in their "ordered" order, newest
    first; "first" among them; "not" these); sentences it must cite ("cites"); words its text
    must hold ("mentions"); and, with gold answers, one of them in the text."""
    cited: list[str] = []
    for c in answer.citations:
        if c.article_id not in cited:
            cited.append(c.article_id)
    wanted = expect.get("articles", [])
    checks = [
        expect.get("kind") in (None, answer.kind),
        bool(set(cited) & set(wanted)) if expect.get("any") else set(wanted) <= set(cited),
        not expect.get("only") or set(cited) <= set(wanted),
        not expect.get("ordered") or [a for a in cited if a in wanted] == wanted,
        expect.get("first") in (None, cited[0] if cited else None),
        not set(expect.get("not", [])) & set(cited),
        all(any(s in c.quote for c in answer.citations) for s in expect.get("cites", [])),
        all(m in answer.text for m in expect.get("mentions", [])),
        not golds or contains_gold(answer.text, golds),
    ]
    return all(checks)


def judge_correct(judge, item: EvalItem, answer: str) -> bool | None:
    """Optional LLM-as-judge (a capable chat model): is the answer correct given the gold answers?"""
    prompt = (
        "Gold answers: " + " | ".join(item.answers) + f"\nQuestion: {item.question}\nCandidate answer: {answer}\n"
        "Is the candidate answer correct (same meaning as a gold answer)? Reply yes or no."
    )
    reply = "".join(judge.stream([{"role": "user", "content": prompt}], max_tokens=3)).strip().lower()
    return reply.startswith("yes") if reply[:3] in ("yes", "no") else None


QUESTION_WORDS = ("what", "who", "where", "when", "how", "which", "why")


def question_word(question: str) -> str:
    """The question word a question is asked with (its first one of QUESTION_WORDS, "whose" and
    "whom" as who), else "other"."""
    for word in re.findall(r"[a-z]+", question.lower()):
        word = {"whose": "who", "whom": "who"}.get(word, word)
        if word in QUESTION_WORDS:
            return word
    return "other"


def evidence_reach(lib, item: EvalItem) -> dict:
    """Where the gold answer is in what retrieval gives the answer chain: the top three evidence
    sentences, and the passages within 1,500 and 2,500 characters."""
    from qa.retrieve.ranking import rank_evidence

    top = rank_evidence(item.question, lib.sentences(item.question))[:3]
    reach = {"top1_holds": bool(top) and contains_gold(top[0].text, item.answers),
             "top3_holds": any(contains_gold(s.text, item.answers) for s in top)}
    for chars in PASSAGE_CHARS:
        reach[f"passages_{chars}"] = contains_gold(" ".join(h.text for h in lib.passages(item.question, chars)), item.answers)
    return reach


def evaluate(lib, item: EvalItem, judge=None) -> dict:
    t = time.perf_counter()
    hits = lib.search(item.question if not item.history else f"{item.history[-1][0]} {item.question}", k=MAX_K)
    search_s = time.perf_counter() - t
    answer = lib.ask(item.question, history=item.history or None)
    row = {
        "id": item.id, "question": item.question, "kind": item.kind, "unanswerable": item.unanswerable,
        "gold": item.answers, "answer": answer.text, "answer_kind": answer.kind, "refused": answer.refused,
        "standalone": answer.question, "citations": [c.to_dict() for c in answer.citations], "grounded": answer.grounded,
        "retrieval_rank": None if item.unanswerable else retrieval_rank(item, hits),
        "answerability": answer.signals.get("answerability"),
        "candidate": answer.signals.get("candidate", None if answer.refused else answer.text),
        "timings": {**answer.timings, "search_k10": search_s}, "tokens": answer.tokens,
        # A chat model's own reply, and why it was not kept (its refusal, or names / numbers no passage holds).
        **{k: answer.signals[k] for k in ("model_answer", "model_refused", "model_kept", "unsupported", "quoted_over_refusal")
           if k in answer.signals},
    }
    if item.expect:  # whole-article, timeline and dated questions: judged by what they cite
        ok = meets_expectation(item.expect, answer, item.answers)
        row |= {"em": None, "f1": None, "contains": ok, "useful": ok, "candidate_useful": ok, "expect": item.expect}
    elif item.unanswerable:
        row |= {"refusal_correct": answer.refused}
    else:
        text = "" if answer.refused else answer.text
        contains = contains_gold(text, item.answers)
        # Useful: the answer, or the sentence it cites (shown beside it), holds a gold answer.
        cited = not answer.refused and any(contains_gold(c.quote, item.answers) for c in answer.citations if not c.field)
        row |= {"em": exact_match(text, item.answers), "f1": token_f1(text, item.answers), "contains": contains,
                "useful": (contains or cited) and answer.kind in ("span", "quote", "fact"),
                "answer_holds_gold": contains and answer.kind in ("span", "quote", "fact"),
                # a span answer is right when it holds a gold answer or shares half its words (token F1 >= 0.5)
                "span_right": answer.kind == "span" and (contains or token_f1(text, item.answers) >= 0.5),
                "candidate_useful": contains_gold(row["candidate"] or "", item.answers)}
        if "refusal_quote" in answer.signals:  # what quoting over the model's refusal gives (evals/chat_fit.py)
            row["refusal_quote_useful"] = any(contains_gold(q, item.answers) for q in answer.signals["refusal_quote"])
        if not item.history:
            row |= evidence_reach(lib, item)
        if judge is not None and not answer.refused:
            row["judge_correct"] = judge_correct(judge, item, answer.text)
    return row


def summarise(rows: list[dict]) -> dict:
    answerable = [r for r in rows if not r["unanswerable"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    answered = [r for r in rows if not r["refused"]]
    def mean(values):
        values = [v for v in values if v is not None]  # judged by expectation: no F1
        return statistics.mean(values) if values else None

    spans = [r for r in answerable if r["answer_kind"] == "span"]
    summary: dict = {
        "questions": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable),
        "useful": mean([float(r["useful"]) for r in answerable]),
        "false_refusals": mean([float(r["refused"]) for r in answerable]),
        "exact_match": mean([r["em"] for r in answerable]),
        "f1": mean([r["f1"] for r in answerable]),
        "span_f1": mean([r["f1"] for r in spans]),
        "contains_gold": mean([float(r["contains"]) for r in answerable]),
        "answered_share": mean([float(not r["refused"]) for r in answerable]),
        "refusal_accuracy": mean([float(r["refusal_correct"]) for r in unanswerable]),
        "grounded": mean([r["grounded"] for r in answered]),
        "cited_share": mean([float(bool(r["citations"])) for r in answered]),
        "tokens_mean": mean([r["tokens"] for r in rows]),
        "recall_at_k": {
            str(k): mean([float(r["retrieval_rank"] is not None and r["retrieval_rank"] <= k) for r in answerable])
            for k in range(1, MAX_K + 1)
        },
        "mrr": mean([1.0 / r["retrieval_rank"] if r["retrieval_rank"] else 0.0 for r in answerable]),
    }
    for name in LATENCIES:
        values = [r["timings"][name] for r in rows if r["timings"].get(name) is not None]
        summary[f"{name}_s_p50"] = percentile(values, 50) if values else None
        summary[f"{name}_s_p95"] = percentile(values, 95) if values else None
    summary["kinds"] = {
        kind: {"answers": sum(r["answer_kind"] == kind for r in rows),
               "answerable": sum(r["answer_kind"] == kind for r in answerable),
               "useful": mean([float(r["useful"]) for r in answerable if r["answer_kind"] == kind]),
               "f1": mean([r["f1"] for r in answerable if r["answer_kind"] == kind]),
               "unanswerable": sum(r["answer_kind"] == kind for r in unanswerable)}
        for kind in KINDS
    }
    summary["answer_holds_gold"] = mean([float(r.get("answer_holds_gold", r["useful"])) for r in answerable])
    summary["span_right"] = mean([float(r.get("span_right", False)) for r in answerable])
    for key in ("top1_holds", "top3_holds", *(f"passages_{c}" for c in PASSAGE_CHARS)):
        summary[key] = mean([float(r[key]) for r in answerable if key in r])
    summary["refused_by_unanswerable_kind"] = {
        kind: mean([float(r["refused"]) for r in unanswerable if (r.get("kind") or "unanswerable") == kind])
        for kind in sorted({r.get("kind") or "unanswerable" for r in unanswerable})}
    summary["question_words"] = {
        word: {"questions": len(group), "useful": mean([float(r["useful"]) for r in group]),
               "refused": mean([float(r["refused"]) for r in group])}
        for word in (*QUESTION_WORDS, "other")
        if (group := [r for r in answerable if question_word(r.get("question", "")) == word])}
    by_question = {}
    for r in rows:
        by_question.setdefault(r.get("kind") or "—", []).append(r)
    summary["question_kinds"] = {
        kind: {"questions": len(group),
               "right": mean([float(r["refusal_correct"] if r["unanswerable"] else r["useful"]) for r in group]),
               "total_s_p50": percentile([r["timings"]["total"] for r in group], 50),
               "total_s_p95": percentile([r["timings"]["total"] for r in group], 95)}
        for kind, group in sorted(by_question.items())
    }
    # Chat models: refused before the model saw any evidence (it wrote nothing), and the model's own
    # answers that passed grounding yet hold no gold answer, or were rejected by it.
    summary["refused_before_model"] = mean([float(r["refused"] and not r["tokens"]) for r in rows]) if rows else None
    summary["grounded_but_wrong"] = mean([float(not r["useful"]) for r in answerable if r.get("model_kept")])
    summary["rejected_by_grounding"] = mean([1.0 - r["model_kept"] for r in rows if "model_kept" in r])
    judged = [r["judge_correct"] for r in answerable if r.get("judge_correct") is not None]
    if judged:
        summary["judge_accuracy"] = mean([float(j) for j in judged])
    return summary


def fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


SUMMARY_ROWS = [
    ("questions", "questions"), ("answerable", "answerable"), ("unanswerable", "unanswerable"),
    ("useful answers (answerable: the answer or the sentence it cites holds a gold answer)", "useful"),
    ("answer text holds a gold answer", "answer_holds_gold"), ("span answers right (of answerable; holds a gold answer or token F1 >= 0.5)", "span_right"),
    ("top evidence sentence holds the gold answer", "top1_holds"), ("top three evidence sentences hold it", "top3_holds"),
    ("passages recall @1,500 chars", "passages_1500"), ("passages recall @2,500 chars", "passages_2500"),
    ("false refusals (answerable refused)", "false_refusals"),
    ("exact match", "exact_match"), ("token F1 (all answerable; a refusal scores 0)", "f1"),
    ("token F1 of span answers", "span_f1"), ("answer contains gold", "contains_gold"),
    ("answerable answered", "answered_share"), ("refusal accuracy (unanswerable)", "refusal_accuracy"),
    ("groundedness (answered)", "grounded"), ("answers with a citation", "cited_share"),
    ("retrieval MRR@10", "mrr"), ("tokens per answer", "tokens_mean"), ("LLM-judge accuracy", "judge_accuracy"),
]


def write_report(run: Path, summary: dict, rows: list[dict], meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    lines = [f"# Evaluation: {meta['dataset']}", "", f"Backend `{meta['backend']}`, encoder `{meta.get('encoder')}` "
             f"(CPU flags {meta.get('cpu_flags') or 'none of interest'}), collection built from "
             f"`{meta['corpus']}`, {meta['questions']} questions (seed {meta['seed']}), {meta['seconds']:.0f} s.", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {fmt(summary.get(key))} |" for label, key in SUMMARY_ROWS if key in summary]
    lines += ["", "## Retrieval recall@k", "", "| k | " + " | ".join(summary["recall_at_k"]) + " |",
              "|---|" + "---|" * len(summary["recall_at_k"]),
              "| recall | " + " | ".join(fmt(v) for v in summary["recall_at_k"].values()) + " |", "",
              "## Latency (seconds)", "", "| stage | p50 | p95 |", "|---|---|---|"]
    lines += [f"| {n} | {fmt(summary[f'{n}_s_p50'])} | {fmt(summary[f'{n}_s_p95'])} |" for n in LATENCIES]
    if summary.get("refused_by_unanswerable_kind"):
        lines += ["", "## Unanswerable questions refused, by kind", "", "| kind | refused |", "|---|---|"]
        lines += [f"| {kind} | {fmt(v)} |" for kind, v in summary["refused_by_unanswerable_kind"].items()]
    lines += ["", "## Answerable questions by question word", "", "| word | questions | useful | refused |", "|---|---|---|---|"]
    lines += [f"| {w} | {g['questions']} | {fmt(g['useful'])} | {fmt(g['refused'])} |" for w, g in summary["question_words"].items()]
    lines += ["", "## By kind of question", "", "| question kind | questions | right | p50 s | p95 s |", "|---|---|---|---|---|"]
    lines += [f"| {kind} | {k['questions']} | {fmt(k['right'])} | {fmt(k['total_s_p50'])} | {fmt(k['total_s_p95'])} |"
              for kind, k in summary["question_kinds"].items()]
    lines += ["", "## Answers by kind", "", "| kind | answers | of answerable | useful | F1 | of unanswerable |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {kind} | {k['answers']} | {k['answerable']} | {fmt(k['useful'])} | {fmt(k['f1'])} | {k['unanswerable']} |"
              for kind, k in summary["kinds"].items()]

    f1s = [r["f1"] for r in rows if not r["unanswerable"] and r["f1"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(f1s, bins=10, range=(0, 1), color="#2563eb")
    ax.set(title="Token F1 per answerable question", xlabel="F1", ylabel="questions")
    fig.tight_layout(), fig.savefig(run / "f1.png"), plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist([r["timings"]["total"] for r in rows], bins=20, color="#16a34a")
    ax.set(title="Seconds per answer", xlabel="s", ylabel="questions")
    fig.tight_layout(), fig.savefig(run / "latency.png"), plt.close(fig)

    ks = [int(k) for k in summary["recall_at_k"]]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(ks, [summary["recall_at_k"][str(k)] or 0 for k in ks], marker="o", color="#f59e0b")
    ax.set(title="Retrieval recall vs k", xlabel="k", ylabel="recall", ylim=(0, 1.02))
    fig.tight_layout(), fig.savefig(run / "recall_at_k.png"), plt.close(fig)
    images = "![F1](f1.png) ![latency](latency.png) ![recall](recall_at_k.png)"
    if refusal_curve(rows, run / "refusal_curve.png"):
        images += " ![answer or refuse](refusal_curve.png)"
    lines += ["", images, "", *failure_lines(rows)]
    (run / "report.md").write_text("\n".join(lines), encoding="utf-8")


def refusal_curve(rows: list[dict], path: Path) -> bool:
    """Useful answers vs unanswerable refused as the answerability threshold moves (rows whose
    answer kept its score and candidate); the run's own threshold is the marked point."""
    scored = [r for r in rows if r.get("answerability") is not None and r.get("candidate") is not None]
    answerable = [r for r in scored if not r["unanswerable"]]
    unanswerable = [r for r in scored if r["unanswerable"]]
    if not answerable or not unanswerable:
        return False
    import matplotlib.pyplot as plt

    thresholds = sorted({0.0, 1.0, *(r["answerability"] for r in scored)})
    useful = [sum(r["answerability"] >= t and r["candidate_useful"] for r in answerable) / len(answerable) for t in thresholds]
    refused = [sum(r["answerability"] < t for r in unanswerable) / len(unanswerable) for t in thresholds]
    now_useful = sum(r["useful"] for r in answerable) / len(answerable)
    now_refused = sum(r["refused"] for r in unanswerable) / len(unanswerable)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(refused, useful, color="#2563eb")
    ax.scatter([now_refused], [now_useful], color="#dc2626", zorder=3, label="this run")
    ax.set(title="Answer or refuse", xlabel="unanswerable questions refused", ylabel="useful answers (answerable)",
           xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3), ax.legend(loc="lower left")
    fig.tight_layout(), fig.savefig(path), plt.close(fig)
    return True


def failure_lines(rows: list[dict]) -> list[str]:
    """The questions that failed, so a reader sees why: answerable ones without a useful answer,
    unanswerable ones answered."""
    failed = [r for r in rows if (r["unanswerable"] and not r["refused"]) or (not r["unanswerable"] and not r["useful"])]
    lines = [f"## Failed questions ({len(failed)})", "", "| question | gold | answer | kind | rank of gold passage |",
             "|---|---|---|---|---|"]
    cell = lambda text: " ".join(str(text).split()).replace("|", "\\|")[:200]  # noqa: E731
    for r in failed:
        gold = "(unanswerable)" if r["unanswerable"] else " / ".join(r["gold"][:3])
        rank = "—" if r["retrieval_rank"] is None else r["retrieval_rank"]
        lines.append(f"| {cell(r['question'])} | {cell(gold)} | {cell(r['answer'])} | {r['answer_kind']} | {rank} |")
    return lines + [""]


def run_eval(
    dataset_path: Path, out: Path | None = None, *, limit: int | None = None, seed: int = 0,
    corpus: Path | None = None, settings=None, judge=None, progress: Callable[[int, int], None] | None = None,
    stories: int | None = None, out_of_library: int = 0,
) -> tuple[Path, dict]:
    """`stories` / `out_of_library` (SQuAD-format files such as NewsQA): a library of that many
    sampled stories plus questions about stories left out; `limit` then samples the answerable
    questions and every out-of-library one is kept."""
    from qa.config import get_settings
    from qa.library import Library

    settings = settings or get_settings()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qa-eval-") as tmp:
        dataset = load_dataset(dataset_path, corpus, Path(tmp), stories=stories, out_of_library=out_of_library, seed=seed)
        items = dataset.items
        if stories:
            answerable = [i for i in items if not i.unanswerable]
            if limit and limit < len(answerable):
                answerable = random.Random(seed).sample(answerable, limit)
            items = answerable + [i for i in items if i.unanswerable]
        elif limit and limit < len(items):
            items = random.Random(seed).sample(items, limit)
        # A fresh embedded collection per run: reproducible, and the user's library is untouched.
        lib = Library(Path(tmp) / "store", "eval", settings=settings)
        report = lib.ingest(dataset.corpus)
        rows = []
        for n, item in enumerate(items, start=1):
            rows.append(evaluate(lib, item, judge))
            if progress:
                progress(n, len(items))
        backend = lib.engine.llm.name
        encoder = getattr(lib.embedder, "writer", lib.embedder.name)  # which MiniLM encoder, or the API model
    summary = summarise(rows)
    run = Path(out) if out else Path("evals/runs") / f"{dataset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run.mkdir(parents=True, exist_ok=True)
    from qa.models.encoders import cpu_flags

    meta = {"dataset": str(dataset_path), "corpus": ", ".join(str(c) for c in dataset.corpus), "backend": backend,
            "encoder": encoder, "cpu_flags": " ".join(cpu_flags()),
            "questions": len(rows), "seed": seed, "limit": limit, "stories": stories, "out_of_library": out_of_library,
            "seconds": time.perf_counter() - started,
            "ingest": report.summary()}
    with open(run / "results.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (run / "summary.json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=2))
    write_report(run, summary, rows, meta)
    return run, summary


def compare(run_a: Path, run_b: Path) -> list[tuple[str, float | None, float | None, float | None]]:
    """(metric, A, B, B - A) for every numeric summary figure of two runs."""
    a = json.loads((Path(run_a) / "summary.json").read_text())["summary"]
    b = json.loads((Path(run_b) / "summary.json").read_text())["summary"]
    flat = lambda s: {**{k: v for k, v in s.items() if not isinstance(v, dict)}, **{f"recall@{k}": v for k, v in s["recall_at_k"].items()}}  # noqa: E731
    fa, fb = flat(a), flat(b)
    rows = []
    for key in fa:
        va, vb = fa.get(key), fb.get(key)
        rows.append((key, va, vb, None if va is None or vb is None else vb - va))
    return rows
