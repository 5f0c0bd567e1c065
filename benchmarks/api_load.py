"""Concurrent clients against a real `qa serve`: POST /v1/ask from N threads at once.

    python -m benchmarks api-load [--clients 20] [--rounds 1]

Starts `qa serve` on a free 127.0.0.1 port over a fresh store holding seeds/, fires the clients
together (seed questions, answerable and not), and prints latency p50/p95 and the error count."""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .report import save

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["Who said GSOMIA scrapping was a misjudgment?", "Why did South Korea decide to end GSOMIA?",
             "Who wrote the article?", "What is the population of Tokyo?", "What does GSOMIA stand for?"]


def main(argv=None) -> None:
    from qa.metrics import percentile

    parser = argparse.ArgumentParser(prog="python -m benchmarks api-load", description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "api_load.json"))
    args = parser.parse_args(argv)

    qa = str(Path(sys.executable).parent / "qa")
    with tempfile.TemporaryDirectory() as home, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = {**os.environ, "QA_DATA_DIR": str(Path(home) / "data"), "HF_HUB_OFFLINE": "1"}
        subprocess.run([qa, "ingest", str(ROOT / "seeds")], env=env, check=True, capture_output=True)
        server = subprocess.Popen([qa, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/v1/ask"
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.2)

            def ask(i: int) -> tuple[float, bool]:
                body = json.dumps({"question": QUESTIONS[i % len(QUESTIONS)]}).encode()
                started = time.perf_counter()
                try:
                    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=600) as response:
                        ok = response.status == 200 and "kind" in json.loads(response.read())
                except OSError:
                    ok = False
                return time.perf_counter() - started, ok

            ask(0)  # warm: the first question loads the models
            results = []
            wall = time.perf_counter()
            for _ in range(args.rounds):
                with ThreadPoolExecutor(max_workers=args.clients) as pool:
                    results += list(pool.map(ask, range(args.clients)))
            wall = time.perf_counter() - wall
        finally:
            server.terminate()
            server.wait(30)
    latencies = [s for s, _ in results]
    summary = {"clients": args.clients, "requests": len(results), "errors": sum(not ok for _, ok in results),
               "p50_s": statistics.median(latencies), "p95_s": percentile(latencies, 95), "max_s": max(latencies),
               "wall_s": wall, "answers_per_s": len(results) / wall}
    print(json.dumps(summary, indent=2))
    save(summary, args.out)
