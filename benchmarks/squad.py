"""SQuAD loading lives with the evaluation code; the benchmarks share it."""

from evals.squad import DEFAULT_SQUAD, Question, load_squad, map_spans, sample, write_jsonl  # noqa: F401
