"""Ingest and query speed against the stock LlamaIndex pipeline, side by side in one process run.

    python -m benchmarks ingest [--repeats 3] [--questions 1000]
    python -m benchmarks query  [--repeats 3] [--questions 1000]

Corpus: SQuAD 2.0 dev half (each article = its paragraphs joined by blank lines). Models are
loaded and warmed before any timing, for both pipelines; each figure is the median of the
repeats, and the ratio to the stock pipeline measured in the same run is what counts.

ingest: fresh ingest seconds of the stock pipeline (SentenceSplitter 256/32, HuggingFaceEmbedding
fp32, VectorStoreIndex over Chroma), of ours in fp32 and in the automatically chosen precision
(bf16 where the CPU supports it), re-ingest of the unchanged corpus, and recall (a retrieved
chunk covers a gold answer span) so speed is never bought with quality.
query: retrieve latency p50/p95 of the stock retriever (k=5) and ours (hybrid, k=5) on the
same questions."""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from .report import machine_line, save
from .retrieval import cleaned_texts, covers
from .squad import DEFAULT_SQUAD, load_squad, map_spans, sample, write_jsonl
from .stock import build_stock_index, stock_embedder, stock_hits


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def ours(folder: Path, encoder: str, embedders: dict):
    from qa.config import Settings
    from qa.library import Library

    return Library(folder, "squad", settings=Settings(embed_precision=encoder), embedder=embedders[encoder])


def load_embedders() -> tuple[dict, dict]:
    """Every encoder this CPU runs natively, loaded and warmed; and the machine's measured choice."""
    from qa.config import get_settings
    from qa.models.embeddings import MiniLMEmbedder
    from qa.models.encoders import VARIANTS, cpu_supports_bf16

    cache = get_settings().cache_dir
    measurements = MiniLMEmbedder(cache_dir=cache).encoders.measurements()
    encoders = [v for v in VARIANTS if v != "torch-bf16" or cpu_supports_bf16()]
    embedders = {v: MiniLMEmbedder(precision=v, cache_dir=cache) for v in encoders}
    for e in embedders.values():
        e.embed(["warm up", "the model before timing"])
    return embedders, measurements


def recall_ours(lib, questions, budget: int) -> tuple[float, float]:
    """A gold answer span inside the passages a question gets within `budget` characters."""
    found, chars = 0, []
    for q in questions:
        hits = lib.passages(q.question, chars=budget)
        chars.append(sum(len(h.text) for h in hits))
        found += any(h.article_id == q.article_id and covers(h, q.spans) for h in hits)
    return found / len(questions), statistics.mean(chars)


def recall_stock(retriever, questions) -> tuple[float, float]:
    found, chars = 0, []
    for q in questions:
        hits = stock_hits(retriever, q.question)
        chars.append(sum(len(t) for *_, t in hits))
        found += any(a == q.article_id and any(s0 <= s and e <= e0 for s, e in q.spans) for a, s0, e0, _ in hits)
    return found / len(questions), statistics.mean(chars)


def setup(args):
    records, questions = load_squad(Path(args.squad))
    chosen = sample(questions, args.questions, args.seed)
    tmp = args.tmp
    corpus = write_jsonl(records, tmp)
    texts = cleaned_texts(corpus)
    map_spans(texts, chosen)
    return tmp, corpus, texts, chosen


def run_ingest(args) -> dict:
    from qa.text.chunking import chunk_text

    tmp, corpus, texts, chosen = setup(args)
    chars = sum(len(t) for t in texts.values())
    chunk_text("Warm up the sentence splitter. Load it once.")
    embedders, measurements = load_embedders()
    stock_model = stock_embedder()
    stock_model.get_text_embedding("warm up")
    times: dict[str, list[float]] = {"stock": [], **{e: [] for e in embedders}, "reingest": []}
    last: dict = {}
    for r in range(args.repeats):
        dt, index = timed(lambda: build_stock_index(texts, tmp / f"stock-{r}", stock_model))
        times["stock"].append(dt)
        last["stock"] = index
        for encoder in embedders:  # interleaved with the stock run, so drift hits all alike
            lib = ours(tmp / f"{encoder}-{r}", encoder, embedders)
            dt, report = timed(lambda: lib.ingest([corpus]))
            assert not report.rejected and report.chunks_added, report.summary()
            times[encoder].append(dt)
            last[encoder] = lib
        dt, report = timed(lambda: last[measurements["chosen"]].ingest([corpus]))
        assert not report.added and not report.replaced and not report.chunks_added, report.summary()
        times["reingest"].append(dt)
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    stock_recall = recall_stock(last["stock"].as_retriever(similarity_top_k=args.stock_k), chosen)
    rows = [
        {"pipeline": f"stock LlamaIndex (256/32, k={args.stock_k})", "encoder": "torch-fp32 (HuggingFaceEmbedding)",
         "ingest_s": med["stock"], "runs": times["stock"], "chunks": last["stock"].vector_store._collection.count(),
         "recall": stock_recall[0], "context_chars": stock_recall[1]},
    ]
    for encoder in embedders:
        recall, context = recall_ours(last[encoder], chosen, args.chars)
        rows.append({"pipeline": f"articles-qa ({args.chars} chars)" + (" *chosen*" if encoder == measurements["chosen"] else ""),
                     "encoder": encoder, "ingest_s": med[encoder], "runs": times[encoder],
                     "chunks": last[encoder].store.chunks.count(), "recall": recall, "context_chars": context})
    reference = next(r["recall"] for r in rows if r["encoder"] == "torch-fp32")
    for row in rows:
        row["chars_per_s"] = chars / row["ingest_s"]
        row["speedup_vs_stock"] = med["stock"] / row["ingest_s"]
        row["recall_vs_fp32"] = row["recall"] - reference if row is not rows[0] else None
    return {
        "benchmark": "ingest", "dataset": Path(args.squad).name, "chars": chars, "questions": len(chosen),
        "repeats": args.repeats, "machine": machine_line(), "encoder_chosen": measurements["chosen"],
        "probe": measurements["variants"], "rows": rows,
        "reingest_s": med["reingest"], "reingest_runs": times["reingest"],
        "reingest_share_of_fresh": med["reingest"] / med[measurements["chosen"]],
    }


def print_ingest(result: dict) -> None:
    print(f"\nIngest of {result['dataset']} ({result['chars']:,} chars), median of {result['repeats']}; recall on {result['questions']} questions")
    print(result["machine"])
    header = f"{'pipeline':<36} {'encoder':<34} {'ingest s':>8} {'chars/s':>8} {'vs stock':>8} {'chunks':>6} {'recall':>6} {'vs fp32':>7} {'ctx chars':>9}"
    print(header + "\n" + "-" * len(header))
    for r in result["rows"]:
        delta = "" if r["recall_vs_fp32"] is None else f"{r['recall_vs_fp32']:+.3f}"
        print(f"{r['pipeline']:<36} {r['encoder']:<34} {r['ingest_s']:>8.2f} {r['chars_per_s']:>8.0f} {r['speedup_vs_stock']:>7.2f}x "
              f"{r['chunks']:>6} {r['recall']:>6.3f} {delta:>7} {r['context_chars']:>9.0f}")
    print(f"re-ingest, unchanged corpus: {result['reingest_s']:.3f} s = {100 * result['reingest_share_of_fresh']:.1f}% of a fresh ingest")


def run_query(args) -> dict:
    tmp, corpus, texts, chosen = setup(args)
    embedders, measurements = load_embedders()
    print(machine_line())
    stock_model = stock_embedder()
    index = build_stock_index(texts, tmp / "stock", stock_model)
    lib = ours(tmp / "ours", measurements["chosen"], embedders)
    lib.ingest([corpus])
    stock_retriever = index.as_retriever(similarity_top_k=args.k)
    searches = {
        "stock": lambda q: stock_retriever.retrieve(q),
        "hybrid": lambda q: lib.search(q, k=args.k),
        "vector": lambda q: lib.search(q, k=args.k, mode="vector"),
        "keyword": lambda q: lib.search(q, k=args.k, mode="keyword"),
    }
    latencies: dict[str, list[list[float]]] = {name: [] for name in searches}
    for name, search in searches.items():
        search("warm up")
    for _ in range(args.repeats):
        for name, search in searches.items():  # interleaved, so drift hits all alike
            run = []
            for q in chosen:
                t0 = time.perf_counter()
                search(q.question)
                run.append((time.perf_counter() - t0) * 1000)
            latencies[name].append(run)
    from qa.answer.metrics import percentile

    rows = []
    for name, runs in latencies.items():
        rows.append({
            "retriever": name,
            "p50_ms": statistics.median(percentile(r, 50) for r in runs),
            "p95_ms": statistics.median(percentile(r, 95) for r in runs),
        })
    stock_p50 = rows[0]["p50_ms"]
    for row in rows:
        row["p50_vs_stock"] = stock_p50 / row["p50_ms"]
    return {"benchmark": "query", "dataset": Path(args.squad).name, "questions": len(chosen), "k": args.k,
            "machine": machine_line(), "encoder": measurements["chosen"],
            "repeats": args.repeats, "chunks": lib.store.chunks.count(), "rows": rows}


def print_query(result: dict) -> None:
    print(f"\n{result['machine']}")
    print(f"Retrieve latency, k={result['k']}, {result['questions']} questions x {result['repeats']} (median of per-run percentiles); {result['chunks']} chunks")
    header = f"{'retriever':<10} {'p50 ms':>7} {'p95 ms':>7} {'p50 speed vs stock':>19}"
    print(header + "\n" + "-" * len(header))
    for r in result["rows"]:
        print(f"{r['retriever']:<10} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['p50_vs_stock']:>18.2f}x")


def parse(argv, name: str, k: int):
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", default=str(DEFAULT_SQUAD))
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=k, help="our top-k (query)")
    parser.add_argument("--chars", type=int, default=2500, help="our passage budget for ingest recall (as benchmarks retrieval)")
    parser.add_argument("--stock-k", type=int, default=5, help="the stock retriever's top-k (ingest recall)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / f"{name}.json"))
    return parser.parse_args(argv)


def run_in_temp_dir(argv, name: str, k: int, run, show) -> None:
    """Parse, run in a temp dir removed afterwards, print the table, save the JSON."""
    args = parse(argv, name, k=k)
    args.tmp = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    try:
        result = run(args)
    finally:
        shutil.rmtree(args.tmp, ignore_errors=True)
    show(result)
    save(result, args.out)


def main_ingest(argv=None) -> None:
    run_in_temp_dir(argv, "ingest", 10, run_ingest, print_ingest)


def main_query(argv=None) -> None:
    run_in_temp_dir(argv, "query", 5, run_query, print_query)
