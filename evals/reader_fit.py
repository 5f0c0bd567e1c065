"""Fit the reader (qa/answer/reader.json) and the answer/refuse rule (qa/answer/answerability.json) on the
questions people ask about news, plus SQuAD 2.0.

    python -m evals.reader_fit --natural PATH/newsqa-dev-b.json [--library 120] [--held-out 48]
                               [--answerable 500] [--out-of-library 60] [--squad 200] [--write]

The library is built with the encoder settings choose (QA_EMBED_PRECISION): an answer/refuse rule
fitted with one whose vectors disagree with fp32 (onnx-int8) is written under "encoders" in
qa/answer/answerability.json and serves the collections that encoder wrote; run it once per kind.

The natural questions are NewsQA's (the file stays out of the repository: research-use licence;
only the fitted numbers are committed). Stories the answer benchmark samples by default
(`benchmarks answers --natural`, seed 0) are never used here: of the others, --library stories
are ingested and their questions are the answerable ones; questions about --held-out others
(whose answer string is in no ingested story) are the out-of-library ones. SQuAD 2.0 questions
kept apart from its benchmark add answerable ones and same-paragraph unanswerable ones.

1. Reader: every candidate of the top evidence sentences is labelled right when its token F1 with
   a gold answer is >= 0.5; a logistic rule over the evidence features ("evidence"), then over
   the evidence + local-model features for the best 6 ("local").
2. Span or quote: the probability above which the best candidate is the answer (else the top
   sentence is quoted) is the one with the most useful answers plus right spans on the fitting
   questions, or --span-threshold (0.4 in the committed rule: a wrong span misleads more than a
   quoted sentence, and lower bars cut SQuAD's span F1 to 0.57).
3. Answer or refuse: a logistic rule over the evidence signals and the reader's best probability,
   labelled by whether the answer would be useful; its threshold the lowest one that refuses
   --min-refused (0.85) of the out-of-library questions."""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ANSWER_FEATURES = ["sentence_score", "similarity", "chunk_score", "lemma_coverage", "asked_coverage", "idf_coverage",
                   "missing_idf", "missing_names", "agreement", "margin", "rank_score", "reader_best", "reader_type_fit",
                   "quote_question"]
# The local rule also reads the model's own signal (chat models and servers cannot score).
LOCAL_FEATURES = ANSWER_FEATURES + ["question_pmi", "question_pmi_per_word"]


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


def natural_split(path: Path, library: int, held_out: int, benchmark_stories: int = 150, seed: int = 0):
    """(stories to ingest, their questions, out-of-library questions) from stories the benchmark
    does not sample."""
    from .squad import hold_out, load_squad

    records, questions = load_squad(path)
    benchmark = set(random.Random(seed).sample([r["id"] for r in records], min(benchmark_stories, len(records))))
    rest = [r for r in records if r["id"] not in benchmark]
    rest_questions = [q for q in questions if q.article_id not in benchmark]
    # Every question about the rest of them (held_out stories) whose answer is in no ingested story.
    return hold_out(rest, rest_questions, min(library, len(rest) - held_out), 10**6, seed=1)


def collect(lib, items, engine, use_model: bool) -> list[dict]:
    """Per question: the evidence signals, and every candidate with its features and label."""
    from qa.answer.answerability import evidence_signals, model_signals
    from qa.retrieve.ranking import rank_evidence
    from qa.answer.metrics import token_f1
    from qa.answer.questions import answer_kind
    from qa.answer.reader import candidates

    from .run import contains_gold

    rows = []
    for n, item in enumerate(items, 1):
        ranked = rank_evidence(item.question, lib.sentences(item.question, pool=lib.settings.answer_k))
        kind, _ = answer_kind(item.question)
        top = ranked[:4]
        found = candidates(item.question, [s.text for s in top], [s.score for s in top]) if kind == "span" and top else []
        row = {"question": item.question, "unanswerable": item.unanswerable, "source": item.kind, "kind": kind,
               "signals": {k: v for k, v in evidence_signals(item.question, ranked).items()},
               "sentences_hold": [bool(item.answers) and contains_gold(s.text, item.answers) for s in top],
               "candidates": [{"text": c.text, "sentence": c.sentence_index, "features": c.features,
                               "right": bool(item.answers) and max(token_f1(c.text, [g]) for g in item.answers) >= 0.5,
                               "holds": bool(item.answers) and contains_gold(c.text, item.answers)} for c in found]}
        quote = engine._quote(item.question, ranked, {}) if ranked else None
        row["quote_holds"] = bool(quote and item.answers) and contains_gold(quote.text, item.answers)
        if use_model and found:
            row["prompts"] = [engine.build_prompt(item.question, [s]) for s in top]
        if use_model and quote is not None:
            row["signals"] |= model_signals(engine.llm, item.question, quote.text)
        rows.append(row)
        if n % 100 == 0:
            print(f"{n}/{len(items)} questions read", flush=True)
    return rows


def model_scores(rows: list[dict], llm, rules: dict) -> None:
    """The local model's scores for the best MODEL_SCORED candidates of each question by the
    evidence rule (as qa.reader.read does at answer time)."""
    from qa.answer.reader import MODEL_SCORED, Candidate, add_model_ranks, probability

    for n, row in enumerate(rows, 1):
        if not row["candidates"]:
            continue
        for c in row["candidates"]:
            c["evidence_p"] = probability(c["features"], rules["weights"], rules["bias"])
        head = sorted(row["candidates"], key=lambda c: -c["evidence_p"])[:MODEL_SCORED]
        for index in sorted({c["sentence"] for c in head}):
            group = [c for c in head if c["sentence"] == index]
            for c, (mean, first) in zip(group, llm.score(row["prompts"][index], [c["text"] for c in group])):
                c["features"]["lm_mean"], c["features"]["lm_first"] = mean, first
        objects = [Candidate(c["text"], c["sentence"], 0, 0, "", c["features"]) for c in head]
        add_model_ranks(objects)
        for c in head:
            c["scored"] = True
        if n % 100 == 0:
            print(f"{n}/{len(rows)} questions scored", flush=True)


def fit_rule(examples: list[dict], features: list[str]) -> dict:
    x = np.array([[float(c["features"].get(f, 0.0)) for f in features] for c in examples])
    y = np.array([float(c["right"]) for c in examples])
    weights, bias = fit_logistic(x, y)
    return {"bias": round(bias, 6), "weights": {f: round(float(w), 6) for f, w in zip(features, weights)}}


def decide(row: dict, rule: dict, name: str, threshold: float) -> tuple[bool, bool, float, float]:
    """(useful, span right, best probability, its type fit) of the answer this row gets: the best
    candidate when its probability reaches the threshold, else the best sentences quoted."""
    from qa.answer.reader import probability

    pool = [c for c in row["candidates"] if name == "evidence" or c.get("scored")]
    if not pool:
        return (quote_useful(row), False, 0.0, 0.0)
    best = max(pool, key=lambda c: probability(c["features"], rule["weights"], rule["bias"]))
    p = probability(best["features"], rule["weights"], rule["bias"])
    if p >= threshold:
        useful = best["holds"] or row["sentences_hold"][best["sentence"]]
        return useful, best["right"], p, best["features"]["type_fit"]
    return quote_useful(row), False, p, best["features"]["type_fit"]


def quote_useful(row: dict) -> bool:
    """Whether the quote the engine gives (its best sentences) holds a gold answer."""
    return row.get("quote_holds", bool(row["sentences_hold"]) and row["sentences_hold"][0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.reader_fit", description=__doc__)
    parser.add_argument("--natural", required=True, type=Path)
    parser.add_argument("--library", type=int, default=120)
    parser.add_argument("--held-out", type=int, default=48)
    parser.add_argument("--answerable", type=int, default=500)
    parser.add_argument("--out-of-library", type=int, default=60)
    parser.add_argument("--squad", type=int, default=200)
    parser.add_argument("--min-refused", type=float, default=0.85)
    parser.add_argument("--l2", type=float, default=10.0, help="L2 penalty of the answer/refuse rule (standardised features).")
    parser.add_argument("--rows", type=Path, help="Reuse rows saved by an earlier run.")
    parser.add_argument("--encoder", help="The encoder the saved rows were collected with (rows that do not say).")
    parser.add_argument("--span-threshold", type=float,
                        help="The reader's bar for a span, instead of the one with the most useful answers plus right spans.")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--for-all", action="store_true",
                        help="Write the rules for every encoder (top level, no per-encoder rules), whichever fitted them.")
    args = parser.parse_args(argv)

    from qa.answer.reader import FEATURES, RULE_FILE

    from qa.config import get_settings

    saved = HERE / "runs" / f"reader-fit-rows-{get_settings().embed_precision}.json"
    if args.rows:
        rows = json.loads(args.rows.read_text())
    else:
        rows = gather(args)
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(rows))
    encoder = next((r["encoder"] for r in rows if r.get("encoder")), args.encoder)
    own = encoder not in (None, "torch-fp32", "torch-bf16", "onnx-fp32") and not args.for_all
    suffix = f"-{encoder}" if own else ""
    evidence_features = [f for f in FEATURES if not f.startswith("lm_")]
    span_rows = [r for r in rows if r["candidates"] and not r["unanswerable"]]
    rules = {"evidence": fit_rule([c for r in span_rows for c in r["candidates"]], evidence_features)}
    if any(c.get("scored") for r in span_rows for c in r["candidates"]):
        rules["local"] = fit_rule([c for r in span_rows for c in r["candidates"] if c.get("scored")], FEATURES)
    answerable = [r for r in rows if not r["unanswerable"]]
    if own and RULE_FILE.exists():  # one reader for every encoder (fitted with fp32); only the refusal rule is the encoder's own
        stored_rules = json.loads(RULE_FILE.read_text())
        rules = {name: stored_rules[name] for name in rules}
    report = {}
    for name, rule in rules.items():
        # Useful answers and right spans count alike: a low bar answers with more wrong spans
        # (their sentence still useful), a high one quotes sentences where a span was right.
        if args.span_threshold is not None:
            rule["threshold"] = args.span_threshold
        elif not (own and RULE_FILE.exists()):
            rule["threshold"] = round(float(max(np.linspace(0.05, 0.95, 19),
                                                key=lambda t: sum(sum(decide(r, rule, name, t)[:2]) for r in answerable))), 3)
        best = rule["threshold"]
        outcomes = [decide(r, rule, name, best) for r in answerable]
        report[name] = {"useful": np.mean([o[0] for o in outcomes]), "span_right": np.mean([o[1] for o in outcomes])}
        print(f"reader {name}: span threshold {best:.2f}: useful {report[name]['useful']:.3f}, span right "
              f"{report[name]['span_right']:.3f} of answerable (always answering)")

    # Answer or refuse, per reader rule ("local" serves the local model, "evidence" chat models).
    refusal = {}
    for name, rule in rules.items():
        features = LOCAL_FEATURES if name == "local" else ANSWER_FEATURES
        x, useful, unanswerable, source = [], [], [], []
        for r in rows:
            ok, _, p, fit = decide(r, rule, name, rule["threshold"])
            signals = r["signals"] | {"reader_best": p, "reader_type_fit": fit, "quote_question": float(r["kind"] == "quote")}
            x.append([float(signals.get(f, 0.0)) for f in features])
            useful.append(bool(ok) and not r["unanswerable"])
            unanswerable.append(r["unanswerable"])
            source.append(r["source"])
        x, useful, unanswerable, source = np.array(x), np.array(useful), np.array(unanswerable), np.array(source)
        weights, bias = fit_logistic(x, useful.astype(float), l2=args.l2)
        scores = 1 / (1 + np.exp(-(x @ weights + bias)))
        outside = source == "out_of_library"
        points = [(t, u, float((scores[outside] < t).mean())) for t, u, _ in curve(scores, useful, unanswerable)]
        chosen = max((p for p in points if p[2] >= args.min_refused), key=lambda p: (p[1], -p[0]))
        same = unanswerable & ~outside
        refusal[name] = {"bias": round(bias, 6), "weights": {f: round(float(w), 6) for f, w in zip(features, weights)},
                         "threshold": round(chosen[0], 6)}
        report[f"refusal_{name}"] = {"useful": chosen[1], "out_of_library_refused": chosen[2],
                                     "same_paragraph_refused": float((scores[same] < chosen[0]).mean()) if same.any() else None}
        print(f"refusal {name}: threshold {chosen[0]:.3f}: useful {chosen[1]:.3f} of answerable, out-of-library refused "
              f"{chosen[2]:.3f}, SQuAD same-paragraph refused {report[f'refusal_{name}']['same_paragraph_refused']}")
        if args.write:
            plot(points, chosen, HERE / f"refusal-curve-{name}{suffix}.png",
                 f"Answer or refuse ({name} rule{', ' + encoder if own else ''}): out-of-library questions")
    if args.write:
        from qa.answer.answerability import ANSWERABILITY

        note = ((f"encoder {encoder}; " if own else "") + f"fitted by `python -m evals.reader_fit` on {len(answerable)} answerable questions "
                f"(NewsQA stories the natural benchmark does not sample, SQuAD 2.0 kept apart from its benchmark) and "
                f"{int(sum(r['unanswerable'] for r in rows))} unanswerable (out of library, same paragraph); threshold: most useful "
                f"answers with >= {args.min_refused} of out-of-library questions refused; figures on those: "
                + json.dumps({k: {m: (round(float(v), 3) if v is not None else None) for m, v in d.items()} for k, d in report.items()}))
        if not own:
            RULE_FILE.write_text(json.dumps(rules | {"note": note}, indent=2) + "\n")
        stored = json.loads(ANSWERABILITY.read_text()) if ANSWERABILITY.exists() else {}
        refusal["note"] = note
        if own:  # an encoder whose vectors disagree with fp32 shifts the similarity signals: its own rule
            stored.setdefault("encoders", {})[encoder] = refusal
        elif args.for_all:
            refusal["note"] = f"encoder {encoder}, serving every encoder; " + note
            stored = refusal
        else:
            stored = refusal | ({"encoders": stored["encoders"]} if "encoders" in stored else {})
        ANSWERABILITY.write_text(json.dumps(stored, indent=2) + "\n")
        print(f"wrote {ANSWERABILITY}" + ("" if own else f" and {RULE_FILE}"))


def gather(args) -> list[dict]:
    from evals.datasets import EvalItem
    from qa.config import Settings
    from qa.answer.chain import Engine
    from qa.library import Library
    from qa.models.backends import get_llm

    from .squad import DEFAULT_SQUAD, load_squad, sample, write_jsonl

    stories, questions = natural_split(args.natural, args.library, args.held_out)
    rng = random.Random(2)
    inside = [q for q in questions if not q.unanswerable]
    outside = [q for q in questions if q.unanswerable]
    natural = rng.sample(inside, min(args.answerable, len(inside))) + rng.sample(outside, min(args.out_of_library, len(outside)))
    squad_records, squad_questions = load_squad(DEFAULT_SQUAD)
    kept_apart = benchmark_ids(squad_questions)
    pool = [q for q in squad_questions if q.id not in kept_apart]
    squad = sample(pool, args.squad, 3) + sample(pool, args.squad, 3, unanswerable=True)
    settings = Settings()
    llm = get_llm(settings)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, records, chosen, source in (("natural", stories, natural, None), ("squad", squad_records, squad, "squad")):
            folder = Path(tmp) / name
            folder.mkdir()
            lib = Library(Path(tmp) / f"db-{name}", name, settings=settings)
            lib.ingest([write_jsonl(records, folder)])
            engine = Engine(lib, llm, settings)
            items = [EvalItem(q.id, q.question, q.answers, q.unanswerable,
                              kind=q.kind or ("squad_unanswerable" if q.unanswerable else source or "natural")) for q in chosen]
            rows += [r | {"encoder": lib.embedder.recorded} for r in collect(lib, items, engine, use_model=hasattr(llm, "score"))]
    span_rows = [r for r in rows if r["candidates"] and not r["unanswerable"]]
    from qa.answer.reader import FEATURES

    evidence_rule = fit_rule([c for r in span_rows for c in r["candidates"]], [f for f in FEATURES if not f.startswith("lm_")])
    if hasattr(llm, "score"):
        model_scores(rows, llm, evidence_rule)
    return rows


if __name__ == "__main__":
    main()
