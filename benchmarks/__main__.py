"""Benchmarks entry point: python -m benchmarks retrieval [options]."""

import sys

COMMANDS = {"retrieval": "benchmarks.retrieval", "answers": "benchmarks.answers"}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m benchmarks {{{','.join(COMMANDS)}}} [options]")
    import importlib

    importlib.import_module(COMMANDS[sys.argv[1]]).main(sys.argv[2:])


if __name__ == "__main__":
    main()
