"""Concurrent clients against a real `qa serve`: POST /v1/ask from N threads at once.

    python -m benchmarks api-load [--clients 20] [--rounds 1] [--ingest 200] [--data-dir DIR --collection NAME]

Starts `qa serve` on a free 127.0.0.1 port over a fresh store holding seeds/ (or over an existing
library: --data-dir, e.g. the million-chunk one `benchmarks scale --keep DIR` leaves, collection
"scale"; its own questions.json is asked when it has one), fires the clients together (seed
questions, answerable and not), and prints latency p50/p95 and the error count.
With --ingest N, a mixed load follows: the clients keep asking, round after round, while N
articles stream in through POST /v1/articles one by one; then every article must be found by
its own words (GET /v1/search). Reports errors of both, and the answer p95 with ingest over the
p95 without."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .report import save
from .servers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["Who said GSOMIA scrapping was a misjudgment?", "Why did South Korea decide to end GSOMIA?",
             "Who wrote the article?", "What is the population of Tokyo?", "What does GSOMIA stand for?"]


def article(i: int, run: str = "") -> dict:
    """A short news article with a word of its own (found only in it); `run` keeps a kept
    library's earlier runs apart."""
    word = f"zorvex{run}{i:04d}"
    return {"id": f"stream-{run}{i:04d}", "title": f"Harbour board {word} approves dredging plan {i}",
            "published": "2024-05-04",
            "text": f"The harbour board of Port {word.title()} approved a dredging plan on Friday, its chair said. "
                    f"Work on berth {i} starts in June and costs {i + 2} million dollars, paid by the port's fishing cooperative."}


def mixed_load(port: int, ask, clients: int, articles: int, run: str = "") -> dict:
    """Clients ask round after round while `articles` are POSTed one by one; then each is searched."""
    import threading

    from qa.answer.metrics import percentile

    base = f"http://127.0.0.1:{port}/v1"
    ingest_errors, done = [], threading.Event()

    def stream() -> None:
        try:
            for i in range(articles):
                body = json.dumps({"records": [article(i, run)]}).encode()
                request = urllib.request.Request(f"{base}/articles", data=body, headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=600) as response:
                        report = json.loads(response.read())
                        if report.get("added") != [f"stream-{run}{i:04d}"]:
                            ingest_errors.append(report)
                except OSError as exc:
                    ingest_errors.append(str(exc))
        finally:
            done.set()

    writer = threading.Thread(target=stream)
    started = time.perf_counter()
    writer.start()
    results = []
    while not done.is_set():
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results += list(pool.map(ask, range(clients)))
    writer.join()
    ingest_s = time.perf_counter() - started
    found = 0
    for i in range(articles):
        # By its own word (the 200 articles differ in little else, so vectors cannot tell them apart).
        with urllib.request.urlopen(f"{base}/search?q=zorvex{run}{i:04d}&k=1&mode=keyword", timeout=60) as response:
            found += [p["article_id"] for p in json.loads(response.read())["passages"]] == [f"stream-{run}{i:04d}"]
    latencies = [s for s, _ in results]
    return {"mixed_requests": len(results), "mixed_errors": sum(not ok for _, ok in results), "mixed_p95_s": percentile(latencies, 95),
            "ingested": articles, "ingest_errors": len(ingest_errors), "ingest_error_examples": [str(e)[:300] for e in ingest_errors[:3]],
            "ingest_s": ingest_s, "articles_found_after": found}


def main(argv=None) -> None:
    from qa.answer.metrics import percentile

    parser = argparse.ArgumentParser(prog="python -m benchmarks api-load", description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--ingest", type=int, default=0, help="articles streamed in while the clients ask (mixed load)")
    parser.add_argument("--data-dir", type=Path, help="serve this existing library instead of a fresh one holding seeds/")
    parser.add_argument("--collection", help="its collection (with --data-dir)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "api_load.json"))
    args = parser.parse_args(argv)

    qa = str(Path(sys.executable).parent / "qa")
    questions = QUESTIONS
    asked = itertools.count()  # each request the next question (a kept library has 300 of its own)
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        env = {**os.environ, "QA_DATA_DIR": str(args.data_dir or Path(home) / "data"), "HF_HUB_OFFLINE": "1"}
        if args.collection:
            env["QA_COLLECTION"] = args.collection
        if args.data_dir is None:
            subprocess.run([qa, "ingest", str(ROOT / "seeds")], env=env, check=True, capture_output=True)
        elif (args.data_dir / "questions.json").exists():
            questions = [q["question"] for q in json.loads((args.data_dir / "questions.json").read_text())]
        server_log = Path(home) / "server.log"
        server = subprocess.Popen([qa, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=server_log.open("wb"))
        failures: list[str] = []
        url = f"http://127.0.0.1:{port}/v1/ask"
        try:
            wait_for(f"http://127.0.0.1:{port}/v1/health")

            def ask(i: int) -> tuple[float, bool]:
                body = json.dumps({"question": questions[next(asked) % len(questions)]}).encode()
                started = time.perf_counter()
                try:
                    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=600) as response:
                        ok = response.status == 200 and "kind" in json.loads(response.read())
                except OSError as exc:  # an HTTP error is one too: say what it was
                    detail = exc.read().decode(errors="replace")[:300] if hasattr(exc, "read") else ""
                    failures.append(f"{exc} {detail}".strip())
                    ok = False
                return time.perf_counter() - started, ok

            results: list = []
            started = time.perf_counter()
            ask(0)  # warm: the first question loads the models (and, at scale, the indexes)
            first_s = time.perf_counter() - started
            wall = time.perf_counter()
            for _ in range(args.rounds):
                with ThreadPoolExecutor(max_workers=args.clients) as pool:
                    results += list(pool.map(ask, range(args.clients)))
            wall = time.perf_counter() - wall
            mixed = mixed_load(port, ask, args.clients, args.ingest, run=f"{int(time.time()) % 10**6}-" if args.data_dir else "") \
                if args.ingest else {}
        finally:
            server.terminate()
            server.wait(30)
            if failures:  # what the clients and the server said about the failed requests
                print("\n".join(failures[:5]), file=sys.stderr)
                print(server_log.read_text(errors="replace")[-4000:], file=sys.stderr)
    latencies = [s for s, _ in results]
    summary = {"clients": args.clients, "requests": len(results), "errors": sum(not ok for _, ok in results),
               "p50_s": statistics.median(latencies), "p95_s": percentile(latencies, 95), "max_s": max(latencies),
               "wall_s": wall, "answers_per_s": len(results) / wall, "first_answer_s": first_s,
               "library": "seeds/" if args.data_dir is None else f"{args.data_dir.name} ({args.collection or 'default'})", **mixed}
    if args.ingest:
        summary["mixed_p95_over_p95"] = summary["mixed_p95_s"] / summary["p95_s"]
    print(json.dumps(summary, indent=2))
    save(summary, args.out)
