"""Cold starts: what a shell loop, an evaluation script or a restarted server pays before its
first answer.

    python -m benchmarks cold [--repeats 5]

Over a fresh store holding seeds/ (ingested with an empty cache, so the first-ever costs show:
ONNX export and the encoder measurement), times:
- `qa ask "<question>"` as a new process each time (the first run also writes the local model's
  prefix state; the median is over the runs after it), and whether it imported torch;
- `qa serve`: from starting the process to the first answered POST /v1/ask.
Prints the CPU's flags and the encoder chosen beside every figure."""

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
from pathlib import Path

from .report import machine_line, save

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who said GSOMIA scrapping was a misjudgment?"
def timed_run(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:3])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed, done


def first_answer_seconds(qa: str, env: dict) -> float:
    """Start `qa serve`, ask until an answer comes back; seconds from the start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    body = json.dumps({"question": QUESTION}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/ask", data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    server = subprocess.Popen([qa, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - started < 120:
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = json.loads(response.read())
                if answer.get("answer"):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        raise SystemExit("qa serve gave no answer within 120 s")
    finally:
        server.terminate()
        server.wait(10)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cold", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cold.json"))
    args = parser.parse_args(argv)

    qa = str(Path(sys.executable).parent / "qa")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "QA_DATA_DIR": str(Path(home) / "data"), "QA_CACHE_DIR": str(Path(home) / "cache"), "HF_HUB_OFFLINE": "1"}
        first_ingest, _ = timed_run([qa, "ingest", str(ROOT / "seeds")], env)
        os.environ["QA_CACHE_DIR"] = env["QA_CACHE_DIR"]  # the machine line reads the same cache
        asks = []
        for _ in range(args.repeats + 1):
            elapsed, done = timed_run([qa, "ask", QUESTION], env)
            asks.append(elapsed)
        answer = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
        # One more run that lists its imports (not timed: listing them costs time). A blocked
        # attempt (see questions.torch_hidden) is listed as "torch" alone; a real import loads torch._C.
        _, listed = timed_run([qa, "ask", QUESTION], env | {"PYTHONPROFILEIMPORTTIME": "1"})
        torch_imported = any(line.split("|")[-1].strip() == "torch._C" for line in listed.stderr.splitlines())
        serve = [first_answer_seconds(qa, env) for _ in range(max(1, args.repeats // 2))]
    result = {
        "benchmark": "cold", "machine": machine_line(),
        "first_ingest_with_empty_cache_s": first_ingest,
        "ask_first_s": asks[0], "ask_runs_s": asks[1:], "ask_p50_s": statistics.median(asks[1:]),
        "ask_imported_torch": torch_imported, "ask_answer": answer,
        "serve_first_answer_runs_s": serve, "serve_first_answer_p50_s": statistics.median(serve),
    }
    print(result["machine"])
    print(f"first ingest of seeds/ with an empty cache (ONNX export + encoder measurement): {first_ingest:.1f} s")
    print(f"cold `qa ask`: first {asks[0]:.2f} s (writes the prefix state), then median {result['ask_p50_s']:.2f} s "
          f"over {args.repeats} ({', '.join(f'{a:.2f}' for a in asks[1:])}); torch imported: {torch_imported}; answer: {answer!r}")
    print(f"`qa serve` start to first answer: median {result['serve_first_answer_p50_s']:.2f} s ({', '.join(f'{s:.2f}' for s in serve)})")
    save(result, args.out)
