"""Retrieval at scale (100k chunks by default, --chunks 1000000 for a million): latency, memory of
a serving process, store size, cold start, freshness.

    python -m benchmarks scale [--chunks 100000] [--questions 300] [--keep DIR] [--chroma-server]

The library: the SQuAD 2.0 dev half ingested normally (so questions have real answers), plus
synthetic articles up to --chunks chunks. A synthetic chunk joins 2-4 random SQuAD/seed
sentences; like an ingested chunk it stores their MiniLM vectors and its vector is their
normalised mean (each sentence is encoded once), so building 100k chunks takes minutes, not the
hour real encoding would.

The measurements run in a fresh process, as a server would: first-search time (the on-disk lexical
index opened; nothing is built), freshness (an article ingested by another process, `qa ingest`,
then the next question here: found? how long?), hybrid retrieve p50/p95 at k=5 over the SQuAD questions, recall@5 among the
distractors (a hit counts when it covers the gold span or holds the gold sentence verbatim, as a
synthetic chunk may), and of passages within 1,250 characters; peak RSS; then the wall time of a cold `qa ask` (imports, model loads, index build,
answer) and `qa --help`."""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .report import save
from .servers import free_port, wait_for
from .squad import DEFAULT_SQUAD, load_squad, map_spans, sample, write_jsonl

COLLECTION = "scale"
ROOT = Path(__file__).resolve().parents[1]


def build(folder: Path, target_chunks: int, squad: Path, seed: int) -> dict:
    import numpy as np

    from qa.text.chunking import sentence_spans
    from qa.config import Settings
    from qa.library import Library
    from qa.store.chroma import ArticleRecord, pack_sentences

    records, _ = load_squad(squad)
    lib = Library(folder, COLLECTION, settings=Settings(data_dir=folder))
    t0 = time.perf_counter()
    report = lib.ingest([write_jsonl(records, Path(tempfile.mkdtemp()))] + sorted((ROOT / "seeds").glob("*")))
    real_chunks = report.chunks_added
    texts = [a["text"] for a in records] + [p.read_text(errors="ignore") for p in (ROOT / "seeds").glob("*.txt")]
    sentences = sorted({t[s:e] for t in texts for s, e in sentence_spans(t) if 30 <= e - s <= 300})
    vectors = np.asarray(lib.embedder.embed(sentences), dtype=np.float32)
    rng = random.Random(seed)
    titles = [r["title"] for r in records]
    per_article = 20
    written = 0
    batch: list = []
    batch_vectors: list = []
    n_articles = (target_chunks - real_chunks) // per_article
    for a in range(n_articles):
        article_id = f"synthetic-{a:06d}"
        title = f"{rng.choice(titles)} (synthetic {a})"
        chunks, offset = [], 0
        for i in range(per_article):
            picks = rng.sample(range(len(sentences)), rng.randint(2, 4))
            text = " ".join(sentences[p] for p in picks)
            v = vectors[picks].sum(axis=0)
            batch_vectors.append(v / np.linalg.norm(v))  # as ingest does: the mean of its sentences
            spans, at = [], offset
            for p in picks:
                spans.append((at, at + len(sentences[p])))
                at += len(sentences[p]) + 1
            meta = {"article_id": article_id, "content_hash": "s", "title": title, "source": "synthetic",
                    "start": offset, "end": offset + len(text), "index": i} | pack_sentences(offset, spans, vectors[picks])
            chunks.append((f"{article_id}:s:{i}", text, meta))
            offset += len(text) + 1
        batch.append((ArticleRecord(article_id, "s", f"t{a}", title, "synthetic", None, per_article, offset), chunks))
        if len(batch) * per_article >= 5000 or a == n_articles - 1:
            lib.lexical.apply([(record.id, record.content_hash, chunks) for record, chunks in batch])  # as ingest does
            lib.store.write_articles(batch, np.stack(batch_vectors))
            written += len(batch) * per_article
            batch, batch_vectors = [], []
            print(f"  {real_chunks + written:,} chunks", flush=True)
    lib.lexical.mark_synced(lib.store.bump_stamp())
    return {"real_chunks": real_chunks, "synthetic_chunks": written, "sentences": len(sentences),
            "build_s": time.perf_counter() - t0}


def gold_sentences(text: str, spans) -> list[str]:
    """The sentences holding a gold span: synthetic chunks are made of corpus sentences, so some
    contain one verbatim and answer the question as well as the original does."""
    from qa.text.chunking import sentence_spans

    return [text[a:b] for a, b in sentence_spans(text) if any(a <= s and e <= b for s, e in spans)]


def answers(hit, q: dict) -> bool:
    """The hit covers a gold span of the question's article, or holds a gold sentence verbatim."""
    if hit.article_id == q["article_id"] and any(hit.start <= s and e <= hit.end for s, e in q["spans"]):
        return True
    return any(sentence in hit.text for sentence in q["sentences"])


def probe(folder: str, questions_file: str, repeats: int, chroma_url: str | None = None) -> None:
    """Runs in a fresh process: what a serving process sees (on the embedded store, or through a
    Chroma server serving it). Prints one JSON line."""
    t0 = time.perf_counter()
    from qa.config import Settings
    from qa.library import Library

    questions = json.loads(Path(questions_file).read_text())
    lib = Library(chroma_url or folder, COLLECTION, settings=Settings(data_dir=folder, chroma_url=chroma_url))
    opened = time.perf_counter() - t0
    t1 = time.perf_counter()
    lib.embedder.embed_query("load the embedder")
    embedder_load = time.perf_counter() - t1
    t1 = time.perf_counter()
    lib.search("warm up the lexical index", k=5)
    first_search = time.perf_counter() - t1
    if repeats == 0:  # restart measurement only
        print(json.dumps({"embedder_load_s": embedder_load, "first_search_s": first_search}))
        return
    freshness = fresh_article(lib, folder, chroma_url)
    results: dict = {}
    retrievers = {mode: (lambda q, mode=mode: lib.search(q, k=5, mode=mode)) for mode in ("hybrid", "vector", "keyword")}
    retrievers["passages"] = lambda q: lib.passages(q, chars=1250)  # about the size of 5 chunks
    for mode, retrieve in retrievers.items():
        runs, hits = zip(*(timed_pass(retrieve, questions) for _ in range(repeats)))
        found = sum(any(answers(h, q) for h in got) for got, q in zip(hits[0], questions))
        results[mode] = percentiles(runs) | {"recall_at_5": found / len(questions)}
    # Steady state: the store's pages in the OS cache (the passes above read them), this
    # process's record cache emptied, so each question reads its candidates' records from Chroma
    # as a long-running server does for chunks no recent question touched.
    steady = []
    for _ in range(repeats):
        lib.retriever.chunks.forget_records()
        steady.append(timed_pass(retrievers["hybrid"], questions)[0])
    results["hybrid"] |= {f"steady_{k}": v for k, v in percentiles(steady).items()}
    print(json.dumps({
        "chunks": lib.store.chunks.count(), "open_s": opened, "embedder_load_s": embedder_load, "first_search_s": first_search,
        "modes": results, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **freshness,
    }))


def timed_pass(retrieve, questions: list[dict]) -> tuple[list[float], list]:
    """One pass over the questions: each one's milliseconds (sorted) and its hits (in order)."""
    times, hits = [], []
    for q in questions:
        t = time.perf_counter()
        hits.append(retrieve(q["question"]))
        times.append((time.perf_counter() - t) * 1000)
    return sorted(times), hits


def percentiles(runs) -> dict:
    """p50 / p95 of each pass, the median over passes."""
    return {"p50_ms": statistics.median(r[len(r) // 2] for r in runs),
            "p95_ms": statistics.median(r[int(len(r) * 0.95)] for r in runs)}


FRESH = """Harbour town opens floating library

PORT ELLISWORTH (AP) — The harbour town of Port Ellisworth opened a floating library on a converted
ferry on Saturday, the mayor, Dana Kowalczyk, said. The ferry, renamed the Paper Tide, holds 12,000
books and docks at a different pier each week.
"""


def fresh_article(lib, folder: str, chroma_url: str | None = None) -> dict:
    """Freshness: one article ingested by another process (`qa ingest`), then the next question
    here: is it found, and how long does that question take (no rebuild)?"""
    article = Path(tempfile.mkdtemp()) / f"2024-05-04-floating-library-{os.getpid()}.txt"
    article.write_text(FRESH)
    qa = [str(Path(sys.executable).parent / "qa")] + (["--chroma-url", chroma_url] if chroma_url else [])
    t = time.perf_counter()
    subprocess.run(qa + ["--collection", COLLECTION, "--data-dir", folder, "ingest", str(article)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    hits = lib.search("Who is the mayor of Port Ellisworth, where a floating library opened?", k=5)
    next_s = time.perf_counter() - t
    found = any(h.article_id == article.stem for h in hits)
    subprocess.run(qa + ["--collection", COLLECTION, "--data-dir", folder, "delete", article.stem], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"fresh_ingest_other_process_s": ingest_s, "fresh_next_question_s": next_s, "fresh_found": found}



def run_probe(folder: Path, qfile: Path, repeats: int, chroma_url: str | None = None, kind: str = "--probe") -> dict:
    """A probe in a new process whose working directory is an empty temp dir: the library must be
    found whole in its folder (an index left under the working directory would not be)."""
    with tempfile.TemporaryDirectory() as elsewhere:
        out = subprocess.run([sys.executable, "-m", "benchmarks", "scale", "--repeats", str(repeats), kind, str(folder.resolve()), str(qfile.resolve())]
                             + ([chroma_url] if chroma_url else []), check=True, capture_output=True, text=True, cwd=elsewhere,
                             env=os.environ | {"PYTHONPATH": str(ROOT)})
        assert not any(Path(elsewhere).iterdir()), "the probe wrote into its working directory"
    return json.loads(out.stdout.strip().splitlines()[-1])


def rebuild_probe(folder: str, questions_file: str, repeats: int) -> None:
    """Runs in a fresh process: the lexical index deleted, (1) a serving process (background
    rebuild) answers a question at once by vectors, (2) the bulk rebuild's wall time, and the
    rebuilt index gives the same keyword results as the one it replaced. Prints one JSON line."""
    from qa.config import Settings
    from qa.library import Library

    questions = [q["question"] for q in json.loads(Path(questions_file).read_text())][:50]
    lib = Library(folder, COLLECTION, settings=Settings(data_dir=folder))
    # BM25 scores of the top 10, compared: synthetic chunks repeat sentences, so exact ties are
    # common and their order follows the index's document order, which a rebuild may change.
    scores = lambda library: [[round(s, 4) for _, s in library.retriever.chunks.search(q, 10, None)] for q in questions]  # noqa: E731
    before = scores(lib)
    index = lib.lexical.folder
    kept = index.with_name(index.name + ".kept")
    shutil.rmtree(kept, ignore_errors=True)
    index.rename(kept)
    try:
        server = Library(folder, COLLECTION, settings=Settings(data_dir=folder), background_index=True)
        server.embedder.embed_query("load the embedder")
        t = time.perf_counter()
        hits = server.search(questions[0], k=5)
        answered_s = time.perf_counter() - t
        during = {"answered_during_rebuild_s": answered_s, "answered_by_vectors": bool(hits),
                  "keyword_ready_then": server.retriever.chunks.keyword_ready}
        server.retriever.chunks._rebuilding.join()
        background_s = time.perf_counter() - t
        del server
        import gc

        gc.collect()
        shutil.rmtree(index)
        fresh = Library(folder, COLLECTION, settings=Settings(data_dir=folder))
        fresh.retriever.chunks.background = False
        t = time.perf_counter()
        indexed = fresh.retriever.chunks.rebuild()
        rebuild_s = time.perf_counter() - t
        fresh.retriever.chunks.refresh()
        after = scores(fresh)
        shutil.rmtree(kept)
    except BaseException:
        shutil.rmtree(index, ignore_errors=True)
        kept.rename(index)
        raise
    print(json.dumps({"rebuild_s": rebuild_s, "rebuild_chunks": indexed, "background_rebuild_s": background_s, **during,
                      "keyword_scores_same": sum(a == b for a, b in zip(after, before)) / len(before)}))


def server_probe(folder: Path, qfile: Path, repeats: int) -> dict:
    """The same probe with the store behind a Chroma server (`chroma run` on the built folder):
    the serving process then holds no vector index. The host's lexical index is the one built
    with the library (linked under the server location's name, as a host that kept up would have
    it). Also the Chroma server's own peak RSS."""
    from qa.library import lexical_dir

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    built, served = lexical_dir(folder, str(folder), COLLECTION), lexical_dir(folder, url, COLLECTION)
    if not served.exists():
        served.symlink_to(built.resolve(), target_is_directory=True)
    chroma = str(Path(sys.executable).parent / "chroma")
    server = subprocess.Popen([chroma, "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"{url}/api/v2/heartbeat", pause=0.5, timeout=1)
        run_probe(folder, qfile, 0, url)  # the server loads its index once, as a long-running one has
        measured = run_probe(folder, qfile, repeats, url)
        status = Path(f"/proc/{server.pid}/status").read_text()
        measured["chroma_server_peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
        return measured
    finally:
        server.terminate()
        server.wait(timeout=60)
        served.unlink()


def wall(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def dir_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--squad", default=str(DEFAULT_SQUAD))
    parser.add_argument("--keep", help="build the library in DIR and keep it (reused when it exists)")
    parser.add_argument("--chroma-server", action="store_true",
                        help="also measure a serving process with the store behind a Chroma server (`chroma run` on the built folder)")
    parser.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--probe-rebuild", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.json"))
    args = parser.parse_args(argv)
    if args.probe:
        return probe(*args.probe[:2], args.repeats, *args.probe[2:])
    if args.probe_rebuild:
        return rebuild_probe(*args.probe_rebuild, args.repeats)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qa-scale-"))
    try:
        built = {}
        if not (folder / "chroma.sqlite3").exists():
            folder.mkdir(parents=True, exist_ok=True)
            print(f"building {args.chunks:,} chunks in {folder}", flush=True)
            built = build(folder, args.chunks, Path(args.squad), args.seed)
        records, questions = load_squad(Path(args.squad))
        chosen = sample(questions, args.questions, args.seed)
        from .retrieval import cleaned_texts

        texts = cleaned_texts(write_jsonl(records, Path(tempfile.mkdtemp())))
        map_spans(texts, chosen)
        qfile = folder / "questions.json"
        qfile.write_text(json.dumps([{"question": q.question, "article_id": q.article_id, "spans": q.spans,
                                      "sentences": gold_sentences(texts[q.article_id], q.spans)} for q in chosen]))
        measured = run_probe(folder, qfile, args.repeats)
        restarts = [run_probe(folder, qfile, 0)["first_search_s"] for _ in range(3)]
        measured["restart_first_search_s"] = statistics.median(restarts)
        measured |= run_probe(folder, qfile, 0, kind="--probe-rebuild")
        qa = str(Path(sys.executable).parent / "qa")
        env = os.environ | {"QA_DATA_DIR": str(folder), "QA_COLLECTION": COLLECTION}
        cold_help = statistics.median(wall([qa, "--help"]) for _ in range(3))
        cold_ask = statistics.median(wall([qa, "--collection", COLLECTION, "--data-dir", str(folder), "ask", "Who said GSOMIA scrapping was a misjudgment?"], env) for _ in range(args.repeats))
        result = {"benchmark": "scale", **built, **measured, "store_mb": dir_size(folder) / 1e6,
                  "qa_help_s": cold_help, "cold_qa_ask_s": cold_ask, "questions": len(chosen), "repeats": args.repeats}
        if args.chroma_server:
            result["chroma_server"] = server_probe(folder, qfile, args.repeats)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print_table(result)
    save(result, args.out)


def print_table(r: dict) -> None:
    print(f"\nScale: {r['chunks']:,} chunks, {r['questions']} SQuAD questions x {r['repeats']}")
    print(f"{'mode':<8} {'p50 ms':>7} {'p95 ms':>7} {'recall@5':>8}")
    for mode, m in r["modes"].items():
        print(f"{mode:<8} {m['p50_ms']:>7.1f} {m['p95_ms']:>7.1f} {m['recall_at_5']:>8.3f}")
    steady = r["modes"]["hybrid"]
    if "steady_p50_ms" in steady:
        print(f"hybrid, store pages in the OS cache and the record cache emptied: p50 {steady['steady_p50_ms']:.1f} ms, "
              f"p95 {steady['steady_p95_ms']:.1f} ms (above: first passes, pages as found)")
    print(f"serving process: open {r['open_s']:.1f} s, embedder load {r['embedder_load_s']:.1f} s, first search {r['first_search_s']:.2f} s, "
          f"after a restart {r['restart_first_search_s']:.2f} s; peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"freshness: an article ingested by another process ({r['fresh_ingest_other_process_s']:.1f} s) -> found by the next "
          f"question here: {r['fresh_found']}, in {r['fresh_next_question_s'] * 1000:.0f} ms")
    print(f"store on disk: {r['store_mb']:.0f} MB; cold `qa ask`: {r['cold_qa_ask_s']:.1f} s; `qa --help`: {r['qa_help_s']:.2f} s")
    if "rebuild_s" in r:
        print(f"lexical index deleted: bulk rebuild {r['rebuild_s']:.1f} s ({r['rebuild_chunks']:,} chunks; BM25 top-10 scores as before: "
              f"{r['keyword_scores_same']:.0%}); a serving process answered by vectors in {r['answered_during_rebuild_s']:.2f} s "
              f"while it rebuilt in the background ({r['background_rebuild_s']:.1f} s)")
    if r.get("chroma_server"):
        c = r["chroma_server"]
        print(f"through a Chroma server: first search {c['first_search_s']:.2f} s, hybrid p50/p95 {c['modes']['hybrid']['p50_ms']:.1f} / "
              f"{c['modes']['hybrid']['p95_ms']:.1f} ms, recall@5 {c['modes']['hybrid']['recall_at_5']:.3f}; serving process peak RSS "
              f"{c['peak_rss_mb']:.0f} MB, Chroma server {c['chroma_server_peak_rss_mb']:.0f} MB; fresh article found: {c['fresh_found']}, "
              f"in {c['fresh_next_question_s'] * 1000:.0f} ms")
    if r.get("build_s"):
        print(f"built in {r['build_s']:.0f} s ({r['real_chunks']:,} real + {r['synthetic_chunks']:,} synthetic chunks from {r['sentences']:,} sentences)")
