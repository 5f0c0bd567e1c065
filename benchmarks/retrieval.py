"""Retrieval benchmark on SQuAD 2.0 dev (half): recall, MRR, context size, ingest and query time.

    python -m benchmarks retrieval [--questions 1000] [--chunk-sizes 320] [--ks 3,5,8,10] [--budgets 1000,2500]

Recall@k: one of the top-k chunks covers a gold answer span (character offsets). Rows of mode
"passages" are Library.passages() at a character budget instead of k chunks: the best sentences
that fit, joined into passages. Figures are printed as a table and written as JSON under
benchmarks/results/."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from .report import save
from .squad import DEFAULT_SQUAD, load_squad, map_spans, sample, write_jsonl


def covers(hit, spans) -> bool:
    return any(hit.start <= s and e <= hit.end for s, e in spans)


def cleaned_texts(corpus: Path) -> dict[str, str]:
    """The article texts exactly as ingest stores them."""
    from qa.ingest.articles import load_file

    return {a.id: a.text for a in load_file(corpus).articles}


def run(args) -> dict:
    from qa.config import Settings
    from qa.models.embeddings import get_embedder
    from qa.library import Library

    records, questions = load_squad(Path(args.squad))
    chosen = sample(questions, args.questions, args.seed)
    ks = sorted(int(k) for k in args.ks.split(","))
    budgets = [int(b) for b in args.budgets.split(",") if b]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_jsonl(records, Path(tmp))
        map_spans(cleaned_texts(corpus), chosen)
        unmapped = sum(1 for q in chosen if not q.spans)
        for size in (int(s) for s in args.chunk_sizes.split(",")):
            settings = Settings(chunk_size=size, chunk_overlap=args.overlap)
            embedder = get_embedder(settings)
            embedder.embed(["warm up"])
            lib = Library(Path(tmp) / f"db-{size}", f"squad{size}", settings=settings, embedder=embedder)
            report = lib.ingest([corpus])
            assert not report.rejected, report.rejected
            chunk_count = lib.store.chunks.count()
            # One retrieval at max(ks) serves every k of a mode; passages run once per budget.
            runs = [(mode, None, lambda q, mode=mode: lib.search(q, k=max(ks), mode=mode)) for mode in args.modes.split(",")]
            runs += [("passages", budget, lambda q, budget=budget: lib.passages(q, chars=budget)) for budget in budgets]
            for mode, k, retrieve in runs:
                retrieve("warm up")
                latencies, results = [], []
                for q in chosen:
                    t0 = time.perf_counter()
                    hits = retrieve(q.question)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    results.append(hits)
                latencies.sort()
                for cut in ([k] if mode == "passages" else ks):
                    found, rr, chars = 0, 0.0, []
                    for q, hits in zip(chosen, results):
                        top = hits if mode == "passages" else hits[:cut]
                        chars.append(sum(len(h.text) for h in top))
                        rank = next((i for i, h in enumerate(top, 1) if h.article_id == q.article_id and covers(h, q.spans)), None)
                        if rank:
                            found += 1
                            rr += 1 / rank
                    rows.append(
                        {
                            "chunk_size": size, "overlap": args.overlap, "mode": mode, "k": cut, "chunks": chunk_count,
                            "recall": found / len(chosen), "mrr": rr / len(chosen),
                            "context_chars": statistics.mean(chars),
                            "passages": statistics.mean(len(h) for h in results) if mode == "passages" else cut,
                            "ingest_s": report.seconds,
                            "retrieve_p50_ms": latencies[len(latencies) // 2],
                            "retrieve_p95_ms": latencies[int(len(latencies) * 0.95)],
                        }
                    )
    return {"dataset": str(Path(args.squad).name), "questions": len(chosen), "unmapped": unmapped, "seed": args.seed, "rows": rows}


def print_table(result: dict) -> None:
    print(f"\nRetrieval on {result['dataset']}: {result['questions']} answerable questions (seed {result['seed']}; {result['unmapped']} gold spans not found after cleaning)")
    header = f"{'chunk':>5} {'ovl':>4} {'mode':>8} {'k/chars':>7} {'chunks':>6} {'recall':>7} {'MRR':>6} {'ctx chars':>9} {'ingest s':>8} {'p50 ms':>7} {'p95 ms':>7}"
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        print(
            f"{r['chunk_size']:>5} {r['overlap']:>4} {r['mode']:>8} {r['k']:>7} {r['chunks']:>6} {r['recall']:>7.3f} {r['mrr']:>6.3f} "
            f"{r['context_chars']:>9.0f} {r['ingest_s']:>8.1f} {r['retrieve_p50_ms']:>7.1f} {r['retrieve_p95_ms']:>7.1f}"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks retrieval", description=__doc__)
    parser.add_argument("--squad", default=str(DEFAULT_SQUAD))
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-sizes", default="320")
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--ks", default="3,5,8,10")
    parser.add_argument("--modes", default="hybrid")
    parser.add_argument("--budgets", default="1000,1500,2000,2500", help="character budgets for passages rows ('' for none)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval.json"))
    args = parser.parse_args(argv)
    result = run(args)
    print_table(result)
    save(result, args.out)
