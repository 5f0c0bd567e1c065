"""Benchmarks entry point: python -m benchmarks {retrieval,answers,ingest,query,scale,api-load,cold,summaries,feeds} [options]."""

import sys

COMMANDS = {
    "retrieval": ("benchmarks.retrieval", "main"),
    "answers": ("benchmarks.answers", "main"),
    "ingest": ("benchmarks.performance", "main_ingest"),
    "query": ("benchmarks.performance", "main_query"),
    "scale": ("benchmarks.scale", "main"),
    "api-load": ("benchmarks.api_load", "main"),
    "cold": ("benchmarks.cold", "main"),
    "summaries": ("benchmarks.summaries", "main"),
    "feeds": ("benchmarks.feeds", "main"),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m benchmarks {{{','.join(COMMANDS)}}} [options]")
    import importlib

    module, function = COMMANDS[sys.argv[1]]
    getattr(importlib.import_module(module), function)(sys.argv[2:])


if __name__ == "__main__":
    main()
