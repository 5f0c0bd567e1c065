"""Fit the answer/refuse rule (qa/answerability.json) on SQuAD 2.0 questions kept apart from the
answer benchmark's sample, and draw its curve: useful answers vs unanswerable questions refused.

    python -m evals.refusal [--answerable 300] [--unanswerable 300] [--seed 1] [--min-refused 0.62] [--write]

The library is built with the encoder settings choose (QA_EMBED_PRECISION): rules fitted with an
encoder whose vectors disagree with fp32 (onnx-int8) are written under "encoders" in
qa/answerability.json and serve collections that encoder wrote.

Every question is answered with refusal switched off, so each row holds the signals and what would
have been answered. A logistic regression over the signals gives a score; the threshold is the
lowest score that still refuses --min-refused of the unanswerable questions. Two rules: "local"
(evidence + the local model's span) and "evidence" (evidence only, for chat models)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

EVIDENCE_FEATURES = ["sentence_score", "similarity", "chunk_score", "lemma_coverage", "idf_coverage", "missing_idf",
                     "missing_names", "agreement", "margin"]
LOCAL_FEATURES = EVIDENCE_FEATURES + ["span_found", "span_confidence", "quote_question"]
HERE = Path(__file__).resolve().parent


def benchmark_ids(questions, seed: int = 0, answerable: int = 300, unanswerable: int = 200) -> set[str]:
    """The ids `python -m benchmarks answers` samples by default: never used for fitting."""
    from .squad import sample

    return {q.id for q in sample(questions, answerable, seed) + sample(questions, unanswerable, seed, unanswerable=True)}


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method, on standardised features; returns
    weights and bias in the features' own units."""
    mean, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mean) / sd, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.diag([l2] * (z.shape[1] - 1) + [0.0])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty
        w -= np.linalg.solve(hessian, gradient)
    weights = w[:-1] / sd
    return weights, float(w[-1] - np.sum(w[:-1] * mean / sd))


def curve(scores: np.ndarray, useful: np.ndarray, unanswerable: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, useful share of answerable questions, refused share of unanswerable ones)."""
    answerable = ~unanswerable
    points = []
    for t in np.unique(np.concatenate([[0.0], scores, [1.0]])):
        answered = scores >= t
        points.append((float(t), float((answered & useful)[answerable].mean()), float((~answered)[unanswerable].mean())))
    return points


def choose(points, min_refused: float) -> tuple[float, float, float]:
    """The point with the most useful answers that refuses at least min_refused."""
    return max((p for p in points if p[2] >= min_refused), key=lambda p: (p[1], -p[0]))


def collect(answerable: int, unanswerable: int, seed: int) -> list[dict]:
    from qa.config import Settings
    from qa.engine import rank_evidence
    from qa.library import Library

    from .run import contains_gold
    from .squad import DEFAULT_SQUAD, load_squad, sample, write_jsonl

    records, questions = load_squad(DEFAULT_SQUAD)
    kept_apart = benchmark_ids(questions)
    pool = [q for q in questions if q.id not in kept_apart]
    chosen = sample(pool, answerable, seed) + sample(pool, unanswerable, seed, unanswerable=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # Refusal off (threshold 0): every row says what would have been answered.
        lib = Library(Path(tmp) / "db", "fit", settings=Settings(min_answerability=0.0, min_answerability_chat=0.0))
        lib.ingest([write_jsonl(records, Path(tmp))])
        encoder = getattr(lib.embedder, "recorded", None)
        for n, q in enumerate(chosen, 1):
            answer = lib.ask(q.question)
            candidate = answer.signals.get("candidate", answer.text)
            top = rank_evidence(q.question, lib.sentences(q.question))[0].text
            rows.append({"id": q.id, "unanswerable": q.unanswerable, "kind": answer.kind, "question": q.question,
                         "gold": q.answers, "candidate": candidate, "top": top,
                         "top_useful": (not q.unanswerable) and contains_gold(top, q.answers),
                         "useful": (not q.unanswerable) and contains_gold(candidate, q.answers),
                         "signals": {k: v for k, v in answer.signals.items() if not isinstance(v, str)}, "encoder": encoder})
            if n % 50 == 0:
                print(f"{n}/{len(chosen)} answered", flush=True)
    return rows


def plot(points, chosen, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot([p[2] for p in points], [p[1] for p in points], color="#2563eb")
    ax.scatter([chosen[2]], [chosen[1]], color="#dc2626", zorder=3, label=f"chosen: threshold {chosen[0]:.2f}")
    ax.set(title=title, xlabel="unanswerable questions refused", ylabel="useful answers (answerable)", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3), ax.legend(loc="lower left")
    fig.tight_layout(), fig.savefig(path), plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.refusal", description=__doc__)
    parser.add_argument("--answerable", type=int, default=300)
    parser.add_argument("--unanswerable", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-refused", type=float, default=0.62)
    parser.add_argument("--rows", type=Path, help="Reuse rows saved by an earlier run instead of answering again.")
    parser.add_argument("--write", action="store_true", help="Write qa/answerability.json.")
    args = parser.parse_args(argv)

    saved = HERE / "runs" / f"refusal-rows-seed{args.seed}.json"
    if args.rows:
        rows = json.loads(args.rows.read_text())
    else:
        rows = collect(args.answerable, args.unanswerable, args.seed)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(rows))
    useful = np.array([r["useful"] for r in rows])
    unanswerable = np.array([r["unanswerable"] for r in rows])
    rules, report = {}, {}
    # Rules for an encoder whose vectors disagree with fp32 (int8) are kept beside the others.
    encoder = rows[0].get("encoder")
    own = encoder not in (None, "torch-fp32", "torch-bf16", "onnx-fp32")
    for name, features in (("local", LOCAL_FEATURES), ("evidence", EVIDENCE_FEATURES)):
        x = np.array([[float(r["signals"].get(f, 0.0)) for f in features] for r in rows])
        weights, bias = fit_logistic(x, useful.astype(float))
        scores = 1 / (1 + np.exp(-(x @ weights + bias)))
        points = curve(scores, useful, unanswerable)
        chosen = choose(points, args.min_refused)
        rules[name] = {"bias": round(bias, 6), "weights": {f: round(float(w), 6) for f, w in zip(features, weights)},
                       "threshold": round(chosen[0], 6)}
        report[name] = {"useful": chosen[1], "refused": chosen[2], "ceiling_useful": float(useful[~unanswerable].mean())}
        suffix = f"-{encoder}" if own else ""
        plot(points, chosen, HERE / f"refusal-curve-{name}{suffix}.png", f"Answer or refuse ({name} rule{', ' + encoder if own else ''}), held-out SQuAD")
        print(f"{name}: threshold {chosen[0]:.3f}: useful {chosen[1]:.3f} of answerable, refused {chosen[2]:.3f} "
              f"of unanswerable (useful if always answering: {report[name]['ceiling_useful']:.3f})")
    if args.write:
        from qa.engine import ANSWERABILITY

        rules["note"] = (f"encoder {encoder}; " if own else "") + (f"fitted by `python -m evals.refusal --seed {args.seed}` on {int((~unanswerable).sum())} answerable + "
                         f"{int(unanswerable.sum())} unanswerable SQuAD 2.0 dev questions kept apart from the answer "
                         f"benchmark's; threshold: most useful answers with >= {args.min_refused} refused; held-out figures: "
                         + json.dumps({k: {m: round(v, 3) for m, v in r.items()} for k, r in report.items()}))
        stored = json.loads(ANSWERABILITY.read_text())
        if own:
            stored.setdefault("encoders", {})[encoder] = rules
        else:
            stored = {**rules, **({"encoders": stored["encoders"]} if "encoders" in stored else {})}
        ANSWERABILITY.write_text(json.dumps(stored, indent=2) + "\n")
        print(f"wrote {ANSWERABILITY}")


if __name__ == "__main__":
    main()
