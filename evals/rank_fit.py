"""Fit the evidence ranking (qa/retrieve/ranking.json) on the questions people ask about news.

    python -m evals.rank_fit --natural PATH/newsqa-dev-b.json [--library 150] [--squad 400] [--write]

NewsQA stories the answer benchmark samples (`benchmarks answers --natural`, seed 0) are never
used: --library of the others are ingested and every question about them is asked; each
retrieved sentence (the answer chain's pool) is labelled by whether it holds a gold answer. The
weights are a listwise softmax over each question's sentences (L2-regularised, standardised
features), and the figures are cross-validated by story (5 folds): the share of questions whose
top sentence, and top three, hold the answer, for the fitted weights and for the ones in
qa/retrieve/ranking.json now. SQuAD 2.0 questions kept apart from its benchmark check that nothing
slides there. The file stays out of the repository (research-use licence); only the weights
are committed."""

from __future__ import annotations

import argparse
import json
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "runs"


def gather(natural: Path, library: int, squad: int) -> dict[str, list[dict]]:
    """Per question: its story, gold answers, and the retrieved sentence pool."""
    from qa.config import Settings
    from qa.library import Library

    from .reader_fit import benchmark_ids, natural_split
    from .squad import DEFAULT_SQUAD, load_squad, sample, write_jsonl

    stories, questions = natural_split(natural, library, 0)
    squad_records, squad_questions = load_squad(DEFAULT_SQUAD)
    kept_apart = benchmark_ids(squad_questions)
    squad_chosen = sample([q for q in squad_questions if q.id not in kept_apart], squad, 4)
    settings = Settings()
    found: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, records, chosen in (("natural", stories, [q for q in questions if not q.unanswerable]),
                                      ("squad", squad_records, squad_chosen)):
            folder = Path(tmp) / name
            folder.mkdir()
            lib = Library(Path(tmp) / f"db-{name}", name, settings=settings)
            lib.ingest([write_jsonl(records, folder)])
            found[name] = [{"question": q.question, "story": q.article_id, "answers": q.answers,
                            "pool": lib.sentences(q.question, pool=settings.answer_k)} for q in chosen]
            print(f"{name}: {len(chosen)} questions asked", flush=True)
    return found


def matrices(items: list[dict]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    from qa.retrieve.ranking import features

    from .run import contains_gold

    out = []
    for item in items:
        if item["pool"]:
            labels = np.array([contains_gold(s.text, item["answers"]) for s in item["pool"]], dtype=bool)
            out.append((features(item["question"], item["pool"]), labels, item["story"]))
    return out


def fit(data, l2: float = 1.0) -> np.ndarray:
    """Listwise softmax: maximise each question's probability mass on the sentences that hold
    its answer; weights in the features' own units."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    usable = [(x, y) for x, y, _ in data if y.any()]
    stacked = np.vstack([x for x, _ in usable])
    mean, sd = stacked.mean(axis=0), stacked.std(axis=0) + 1e-9
    scaled = [((x - mean) / sd, y) for x, y in usable]

    def loss(w):
        total, grad = l2 * w @ w, 2 * l2 * w
        for z, y in scaled:
            s = z @ w
            p_all = np.exp(s - logsumexp(s))
            p_pos = np.exp(s[y] - logsumexp(s[y]))
            total += logsumexp(s) - logsumexp(s[y])
            grad += z.T @ p_all - z[y].T @ p_pos
        return total, grad

    w = minimize(loss, np.zeros(stacked.shape[1]), jac=True, method="L-BFGS-B").x
    return w / sd


def reach(data, w: np.ndarray) -> dict[str, float]:
    """Share of questions whose top sentence / top three hold the answer."""
    top1 = top3 = 0
    for x, y, _ in data:
        order = np.argsort(-(x @ w), kind="stable")
        top1 += bool(y[order[0]])
        top3 += bool(y[order[:3]].any())
    return {"top1": round(top1 / len(data), 3), "top3": round(top3 / len(data), 3)}


def cross_validated(natural, squad, squad_weight: int, folds: int = 5, l2: float = 1.0) -> dict[str, dict]:
    """Top-1 / top-3 reach of weights fitted without the fold's stories (natural and SQuAD alike)."""
    def fold_of(data):
        stories = sorted({story for _, _, story in data})
        random.Random(0).shuffle(stories)
        return {story: i % folds for i, story in enumerate(stories)}

    fold = fold_of(natural) | fold_of(squad)
    hits = {"natural": {"top1": 0.0, "top3": 0.0}, "squad": {"top1": 0.0, "top3": 0.0}}
    for k in range(folds):
        w = fit([d for d in natural if fold[d[2]] != k] + [d for d in squad if fold[d[2]] != k] * squad_weight, l2)
        for name, data in (("natural", natural), ("squad", squad)):
            test = [d for d in data if fold[d[2]] == k]
            for measure, value in reach(test, w).items():
                hits[name][measure] += value * len(test)
    return {name: {m: round(v / len(data), 3) for m, v in hits[name].items()}
            for name, data in (("natural", natural), ("squad", squad))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.rank_fit", description=__doc__)
    parser.add_argument("--natural", required=True, type=Path)
    parser.add_argument("--library", type=int, default=150)
    parser.add_argument("--squad", type=int, default=400)
    parser.add_argument("--l2", type=float, default=10.0)
    parser.add_argument("--squad-weight", type=int, default=2,
                        help="Each SQuAD question counts this many times in the fit (keeps SQuAD's ranking where it was).")
    parser.add_argument("--reuse", action="store_true", help="Reuse the sentence pools of the last run.")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    from qa.retrieve.ranking import FEATURES, RANK_FILE, weights

    cache = CACHE / "rank-fit-pools.pkl"
    if args.reuse and cache.exists():
        pools = pickle.loads(cache.read_bytes())
    else:
        pools = gather(args.natural, args.library, args.squad)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(pools))
    natural, squad = matrices(pools["natural"]), matrices(pools["squad"])
    now = weights()
    report = {"questions": {"natural": len(natural), "squad": len(squad)},
              "in_pool": round(float(np.mean([y.any() for _, y, _ in natural])), 3),
              "before": {"natural": reach(natural, now), "squad": reach(squad, now)},
              "fitted_cross_validated": cross_validated(natural, squad, args.squad_weight, l2=args.l2)}
    fitted = fit(natural + squad * args.squad_weight, args.l2)
    print(json.dumps(report))
    print({f: round(float(v), 4) for f, v in zip(FEATURES, fitted)})
    if args.write:
        note = (f"fitted by `python -m evals.rank_fit` (listwise softmax, l2 {args.l2}) on {len(natural)} NewsQA questions "
                f"about {args.library} stories the natural benchmark does not sample and {len(squad)} SQuAD 2.0 ones kept apart "
                f"from its benchmark (each counted {args.squad_weight}x); share of questions whose top 1 / top 3 sentences hold "
                f"the answer, 5-fold by story: " + json.dumps(report))
        RANK_FILE.write_text(json.dumps({"weights": {f: round(float(v), 6) for f, v in zip(FEATURES, fitted)},
                                         "note": note}, indent=2) + "\n")
        print(f"wrote {RANK_FILE}")


if __name__ == "__main__":
    main()
