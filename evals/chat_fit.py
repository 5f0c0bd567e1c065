"""Fit the chat path's pre-model refusal: below which evidence-rule score a chat model is not asked.

    python -m benchmarks answers --natural PATH --seed 1 --answerable 100 --backend ... \
        --min-answerability-chat 0 --out natural.json        # the model sees every question
    python -m benchmarks answers --min-answerability-chat 0 --out squad.json ...
    python -m evals.chat_fit natural.json [squad.json] [--min-refused 0.9] [--rule local] [--write]

With the model answering everything, what any threshold would do is known row by row: a
question scored below it is refused before the model (and costs no generation); above it, the
model's own outcome stands (its answer, its refusal, or the grounding check's). The threshold kept
is the one with the most useful answers on the natural questions while refusing at least
--min-refused of the out-of-library ones; SQuAD's same-paragraph unanswerables are reported beside
it. --write stores it as "chat" / RULE in qa/answer/answerability.json with these figures (engine.chat_threshold
reads it for that rule)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ANSWERABILITY = Path(__file__).resolve().parent.parent / "qa" / "answer" / "answerability.json"


def outcome(rows: list[dict], t: float) -> dict:
    """Figures if questions scored below t were refused before the model."""
    answerable = [r for r in rows if not r["unanswerable"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    low = lambda r: (r.get("answerability") or 0.0) < t  # noqa: E731
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None  # noqa: E731
    figures = {
        "useful": mean([float(r["useful"] and not low(r)) for r in answerable]),
        "answerable_refused": mean([float(r["refused"] or low(r)) for r in answerable]),
        "model_calls": mean([float(not low(r)) for r in rows]),
    }
    for kind in sorted({r.get("kind") or "unanswerable" for r in unanswerable}):
        group = [r for r in unanswerable if (r.get("kind") or "unanswerable") == kind]
        figures[f"{kind}_refused"] = mean([float(r["refused"] or low(r)) for r in group])
    return figures


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
    out_kind = next((k for k in outcome(rows, 0.0) if k.endswith("_refused") and k != "answerable_refused"), None)
    candidates = sorted({0.0} | {round(r.get("answerability") or 0.0, 6) + 1e-6 for r in rows})
    table = [(t, outcome(rows, t)) for t in candidates]
    meeting = [(t, f) for t, f in table if out_kind and f[out_kind] >= args.min_refused]
    chosen_t, chosen = max(meeting, key=lambda x: (x[1]["useful"], -x[0])) if meeting else max(table, key=lambda x: x[1][out_kind or "useful"])
    for t in sorted({0.0, 0.1, 0.2, 0.3, 0.4, chosen_t}):
        line = {"threshold": round(t, 4), "natural": outcome(rows, t)}
        if squad:
            line["squad"] = outcome(squad["rows"], t)
        print(json.dumps(line))
    print(f"chosen: {chosen_t:.4f} (most useful natural answers with {out_kind} >= {args.min_refused})")
    if args.write:
        rules = json.loads(ANSWERABILITY.read_text())
        rules.setdefault("chat", {})[args.rule] = {
            "threshold": round(chosen_t, 6),
            "fitted_on": {"natural": natural["summary"].get("backend"), "seed": natural["summary"].get("seed"), "questions": len(rows),
                          "squad_questions": len(squad["rows"]) if squad else 0},
            "figures": {"natural": chosen} | ({"squad": outcome(squad["rows"], chosen_t)} if squad else {}),
            "note": f"score of the {args.rule} answer/refuse rule below which a chat model is not asked "
                    "(evals/chat_fit.py, runs with the model answering every question)",
        }
        ANSWERABILITY.write_text(json.dumps(rules, indent=2) + "\n")
        print(f"wrote {ANSWERABILITY}")


if __name__ == "__main__":
    main()
