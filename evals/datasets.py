"""Evaluation datasets: our JSONL and SQuAD JSON (v1.1/v2.0), read into one shape.

Our JSONL: an optional first line {"corpus": "folder relative to this file"} naming the articles
to ingest, then one question per line:
    {"id"?, "question", "answers": [...], "unanswerable"?: bool, "article"?: article id,
     "support"?: the sentence that answers it, "history"?: [[question, answer], ...],
     "expect"?: what a right answer must be (evals/run.py meets_expectation): its kind, the
                articles its citations come from (in order, first, only, not), sentences it cites}
The corpus may be a list of folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import InputError


@dataclass
class EvalItem:
    id: str
    question: str
    answers: list[str]
    unanswerable: bool = False
    article: str | None = None
    support: str | None = None
    history: list = field(default_factory=list)
    spans: list = field(default_factory=list)  # gold (start, end) in the cleaned article (SQuAD)
    kind: str = ""
    expect: dict = field(default_factory=dict)


@dataclass
class Dataset:
    name: str
    items: list[EvalItem]
    corpus: list[Path]  # files or folders to ingest
    tmp_files: list[Path] = field(default_factory=list)


def load_dataset(path: Path, corpus: Path | None, workdir: Path, *, stories: int | None = None,
                 out_of_library: int = 0, seed: int = 0) -> Dataset:
    """Items and the corpus to ingest; SQuAD articles are written to workdir as JSONL.
    `stories` (SQuAD-format files, e.g. NewsQA): a library of that many sampled stories, plus
    `out_of_library` questions about the stories left out (evals/squad.py hold_out)."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such dataset file")
    if path.suffix == ".json":
        return _load_squad(path, workdir, stories, out_of_library, seed)
    if path.suffix != ".jsonl":
        raise InputError(str(path), "dataset must be .jsonl (ours) or .json (SQuAD)")
    items, folder = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}", f"invalid JSON ({exc.msg})") from None
        if "corpus" in record and "question" not in record:
            named = record["corpus"] if isinstance(record["corpus"], list) else [record["corpus"]]
            folder = [(path.parent / name).resolve() for name in named]
            continue
        if not isinstance(record.get("question"), str) or not record["question"].strip():
            raise InputError(f"{path}:{number}", "field 'question' is missing or empty")
        unanswerable = bool(record.get("unanswerable"))
        answers = record.get("answers") or []
        expect = record.get("expect") or {}
        if not isinstance(expect, dict):
            raise InputError(f"{path}:{number}", "field 'expect' must be an object")
        if not unanswerable and not answers and not expect:
            raise InputError(f"{path}:{number}", "field 'answers' is empty for an answerable question")
        items.append(
            EvalItem(
                id=str(record.get("id") or f"{path.stem}-{number}"),
                question=record["question"],
                answers=list(answers),
                unanswerable=unanswerable,
                article=record.get("article"),
                support=record.get("support"),
                history=record.get("history") or [],
                kind=record.get("kind", ""),
                expect=expect,
            )
        )
    chosen = [Path(corpus)] if corpus else folder
    if chosen is None:
        raise InputError(str(path), "no corpus: add a {\"corpus\": ...} first line or pass --corpus")
    return Dataset(path.stem, items, chosen)


def _load_squad(path: Path, workdir: Path, stories: int | None = None, out_of_library: int = 0, seed: int = 0) -> Dataset:
    from .squad import hold_out, load_squad, map_spans, write_jsonl

    try:
        records, questions = load_squad(path)
    except (KeyError, TypeError, json.JSONDecodeError):
        raise InputError(str(path), "not a SQuAD JSON file (expected data[].paragraphs[].qas[])") from None
    if stories:
        records, questions = hold_out(records, questions, stories, out_of_library, seed)
    corpus = write_jsonl(records, workdir)
    from qa.ingest.articles import load_file

    map_spans({a.id: a.text for a in load_file(corpus).articles}, questions)
    items = [
        EvalItem(id=q.id, question=q.question, answers=q.answers, unanswerable=q.unanswerable,
                 article=None if q.kind else q.article_id, spans=q.spans,
                 kind=q.kind or ("unanswerable" if q.unanswerable else "squad"))
        for q in questions
    ]
    return Dataset(path.stem, items, [corpus])
