"""Fit the chat path's two thresholds on the answer/refuse rule's score: below the first a chat
model is not asked; at or above the second, the model's "The articles don't say." gives way to the
best sentences quoted.

    python -m benchmarks answers --natural PATH --seed 1 --answerable 100 --backend ... \
        --min-answerability-chat 0 --min-answerability-quote-chat 2 --out natural.json   # the model sees every question
    python -m benchmarks answers --min-answerability-chat 0 --min-answerability-quote-chat 2 --out squad.json ...
    python -m evals.chat_fit natural.json [squad.json] [--min-refused 0.9] [--rule local] [--write]

With the model answering everything and its refusals standing, what any pair of thresholds would
do is known row by row: a question scored below the first is refused before the model (and costs
no generation); above it, the model's own outcome stands (its answer, its refusal, or the
grounding check's), except that a refusal scored at or above the second becomes the quote the run
recorded beside it. The pair kept has the most useful answers on the natural questions while
refusing at least --min-refused of the out-of-library ones and, given a SQuAD run, refusing as
many of its same-paragraph unanswerables as the gate alone would (there the model's refusal is
right: a quote must not overrule it); then the most useful SQuAD answers. --write stores it as "chat" / RULE in qa/answer/answerability.json with
these figures (answerability.chat_threshold / chat_quote_threshold read it for that rule)."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

ANSWERABILITY = Path(__file__).resolve().parent.parent / "qa" / "answer" / "answerability.json"


NEVER = float("inf")


def outcome(rows: list[dict], t: float, q: float = NEVER) -> dict:
    """Figures if questions scored below t were refused before the model, and the model's
    refusals of questions scored at or above q were quoted over."""
    answerable = [r for r in rows if not r["unanswerable"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    score = lambda r: r.get("answerability") or 0.0  # noqa: E731
    low = lambda r: score(r) < t  # noqa: E731
    quoted = lambda r: not low(r) and bool(r.get("model_refused")) and score(r) >= q  # noqa: E731
    refused = lambda r: low(r) or (r["refused"] and not quoted(r))  # noqa: E731
    useful = lambda r: not low(r) and (r.get("refusal_quote_useful", False) if quoted(r) else r["useful"])  # noqa: E731
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None  # noqa: E731
    figures = {
        "useful": mean([float(useful(r)) for r in answerable]),
        "answerable_refused": mean([float(refused(r)) for r in answerable]),
        "model_calls": mean([float(not low(r)) for r in rows]),
        "quoted_over_refusal": mean([float(quoted(r)) for r in rows]),
    }
    for kind in sorted({r.get("kind") or "unanswerable" for r in unanswerable}):
        group = [r for r in unanswerable if (r.get("kind") or "unanswerable") == kind]
        figures[f"{kind}_refused"] = mean([float(refused(r)) for r in group])
    return figures


def out_of_library_kind(rows: list[dict]) -> str | None:
    return next((k for k in outcome(rows, 0.0) if k.endswith("_refused") and k != "answerable_refused"), None)


def choose(rows: list[dict], squad_rows: list[dict] | None, min_refused: float) -> tuple[tuple[float, float], dict]:
    """(gate, quote threshold) and the natural figures there: the most useful natural answers
    with at least min_refused of the out-of-library questions refused; with SQuAD rows, no fewer
    same-paragraph unanswerables refused than the gate alone refuses (there the model's refusal is
    right: a quote must not overrule it). Ties: the more useful SQuAD answers, then the fewest
    quotes over the model, then the lowest gate (more questions reach the model)."""
    out_kind = out_of_library_kind(rows)
    # A gate just above each score refuses that question; a quote threshold at the score of a
    # refusal (natural or SQuAD) is where quoting it starts.
    candidates = sorted({0.0} | {round(r.get("answerability") or 0.0, 6) + 1e-6 for r in rows})
    quotes = [NEVER] + sorted({r.get("answerability") or 0.0 for r in rows + (squad_rows or []) if r.get("model_refused")})
    table = [((t, q), outcome(rows, t, q)) for t in candidates for q in quotes if q == NEVER or q >= t]
    meeting = [(tq, f) for tq, f in table if out_kind and f[out_kind] >= min_refused]
    squad_fig = functools.cache(lambda t, q: outcome(squad_rows, t, q) if squad_rows else {})  # each pair once
    if squad_rows:
        meeting = [((t, q), f) for (t, q), f in meeting
                   if squad_fig(t, q).get("unanswerable_refused", 0) >= squad_fig(t, NEVER).get("unanswerable_refused", 0)]
    if not meeting:
        return max(table, key=lambda x: x[1][out_kind or "useful"])
    return max(meeting, key=lambda x: (x[1]["useful"], squad_fig(*x[0]).get("useful", 0), x[0][1], -x[0][0]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evals.chat_fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("natural", help="benchmarks answers --natural output, run with --min-answerability-chat 0")
    parser.add_argument("squad", nargs="?", help="benchmarks answers (SQuAD) output, run the same way")
    parser.add_argument("--min-refused", type=float, default=0.9, help="out-of-library questions refused, at least")
    parser.add_argument("--rule", default="local", choices=["local", "evidence"],
                        help="the rule the runs were scored by: local (the packaged Gemma scores; where it is installed) or evidence")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)

    natural = json.loads(Path(args.natural).read_text())
    squad = json.loads(Path(args.squad).read_text()) if args.squad else None
    rows = natural["rows"]
    out_kind = out_of_library_kind(rows)
    (chosen_t, chosen_q), chosen = choose(rows, squad["rows"] if squad else None, args.min_refused)
    for t, q in sorted({(t, NEVER) for t in (0.0, 0.1, 0.2, 0.3, 0.4)} | {(chosen_t, NEVER), (chosen_t, chosen_q)}):
        line = {"threshold": round(t, 4), "quote_threshold": None if q == NEVER else round(q, 4), "natural": outcome(rows, t, q)}
        if squad:
            line["squad"] = outcome(squad["rows"], t, q)
        print(json.dumps(line))
    print(f"chosen: {chosen_t:.4f}, quote over refusals from {chosen_q:.4f} "
          f"(most useful natural answers with {out_kind} >= {args.min_refused})")
    if args.write:
        rules = json.loads(ANSWERABILITY.read_text())
        rules.setdefault("chat", {})[args.rule] = {
            "threshold": round(chosen_t, 6),
            **({} if chosen_q == NEVER else {"quote_threshold": chosen_q}),  # a refused question's own score: not rounded
            "fitted_on": {"natural": natural["summary"].get("backend"), "seed": natural["summary"].get("seed"), "questions": len(rows),
                          "squad_questions": len(squad["rows"]) if squad else 0},
            "figures": {"natural": chosen} | ({"squad": outcome(squad["rows"], chosen_t, chosen_q)} if squad else {}),
            "note": f"score of the {args.rule} answer/refuse rule below which a chat model is not asked, and at or above "
                    "which its refusal gives way to the best sentences quoted (evals/chat_fit.py, runs with the model "
                    "answering every question)",
        }
        ANSWERABILITY.write_text(json.dumps(rules, indent=2) + "\n")
        print(f"wrote {ANSWERABILITY}")


if __name__ == "__main__":
    main()
