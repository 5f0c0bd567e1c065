"""SQuAD 2.0 (JSON) as articles plus questions with gold spans in article offsets.

Each article is its paragraphs joined by a blank line, as the dataset's README prescribes."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

# A copy kept in the repository (CC BY-SA 4.0; provenance in its README).
DEFAULT_SQUAD = Path(__file__).resolve().parent / "datasets" / "squad2-dev" / "dev-v2.0-half.json"


@dataclass
class Question:
    id: str
    question: str
    article_id: str
    answers: list[str]
    spans: list = field(default_factory=list)  # gold spans (start, end) in cleaned-article offsets
    unanswerable: bool = False
    kind: str = ""  # "out_of_library": asked about a story left out of the library


def load_squad(path: Path = DEFAULT_SQUAD) -> tuple[list[dict], list[Question]]:
    """Articles as JSONL-ready records ({id, title, text}) and all questions."""
    from qa.ingest.articles import slugify

    data = json.loads(Path(path).read_text())["data"]
    records, questions = [], []
    seen: set[str] = set()
    for entry in data:
        article_id = slugify(entry["title"])
        while article_id in seen:  # NewsQA "titles" are a story's first 50 characters: two may match
            article_id += "-2"
        seen.add(article_id)
        parts = []
        for para in entry["paragraphs"]:
            context = para["context"]
            for qa in para["qas"]:
                answers = qa.get("answers") or []
                questions.append(
                    Question(
                        id=qa["id"],
                        question=qa["question"],
                        article_id=article_id,
                        answers=[a["text"] for a in answers],
                        spans=[(len(parts), a["answer_start"], a["text"]) for a in answers],  # mapped later
                        unanswerable=bool(qa.get("is_impossible")),
                    )
                )
            parts.append(context)
        records.append({"id": article_id, "title": entry["title"].replace("_", " "), "text": "\n\n".join(parts)})
    return records, questions


def write_jsonl(records: list[dict], folder: Path) -> Path:
    path = folder / "squad-articles.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def sample(questions: list[Question], n: int, seed: int, unanswerable: bool = False) -> list[Question]:
    pool = [q for q in questions if q.unanswerable == unanswerable]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def map_spans(cleaned: dict[str, str], questions: list[Question]) -> None:
    """Gold spans into offsets of the cleaned article text that was actually stored. Cleaning
    collapses runs of spaces and drops invisible characters, so each answer is found again in
    its cleaned paragraph, at the occurrence nearest its original position."""
    from qa.ingest.articles import clean_story

    starts: dict[str, list[int]] = {}
    for article_id, text in cleaned.items():
        offsets, pos = [], 0
        for block in text.split("\n\n"):
            offsets.append(pos)
            pos += len(block) + 2
        starts[article_id] = offsets
    for q in questions:
        mapped = []
        for para_index, answer_start, answer in q.spans:
            para_start = starts[q.article_id][para_index]
            para_end = starts[q.article_id][para_index + 1] - 2 if para_index + 1 < len(starts[q.article_id]) else None
            para = cleaned[q.article_id][para_start:para_end]
            needle = clean_story(answer, detect_title=False)[0]
            hits = [i for i in range(len(para)) if para.startswith(needle, i)] if needle else []
            if hits:
                best = min(hits, key=lambda i: abs(i - answer_start))
                mapped.append((para_start + best, para_start + best + len(needle)))
        q.spans = mapped


def hold_out(records: list[dict], questions: list[Question], stories: int, out_of_library: int, seed: int):
    """A library of `stories` sampled stories, their questions, and `out_of_library` questions
    about the stories left out, marked unanswerable — but none whose answer string appears in a
    story of the library (it might be answerable after all)."""
    from qa.answer.metrics import normalise_answer

    rng = random.Random(seed)
    chosen = set(rng.sample([r["id"] for r in records], min(stories, len(records))))
    kept = [r for r in records if r["id"] in chosen]
    library_text = normalise_answer(" ".join(r["text"] for r in kept))
    inside = [q for q in questions if q.article_id in chosen]
    outside = [q for q in questions if q.article_id not in chosen and not q.unanswerable
               and not any(normalise_answer(a) and normalise_answer(a) in library_text for a in q.answers)]
    held = rng.sample(outside, min(out_of_library, len(outside)))
    for q in held:
        q.unanswerable, q.kind, q.spans = True, "out_of_library", []
    return kept, inside + held
