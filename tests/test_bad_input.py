"""Bad input, one kind per case, through the real ingest path: each is rejected with one line that
names the file (or field), and the store is exactly as before, down to its write stamp."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import uuid

import pytest

from .conftest import SEED

STORY = "The council approved the new harbor budget on Monday after a long debate about ferries.\n"


def write(name: str, data: bytes | str):
    def build(folder):
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return build


def fifo(folder):
    path = folder / "pipe.txt"
    os.mkfifo(path)
    return path


def folder_with(*entries):
    """A folder holding the given entries: ("fifo", name) / ("socket", name) / ("broken", name)."""
    def build(folder):
        root = folder / "drop"
        root.mkdir()
        for kind, name in entries:
            if kind == "fifo":
                os.mkfifo(root / name)
            elif kind == "socket":
                sock = socket.socket(socket.AF_UNIX)
                sock.bind(str(root / name))
                sock.close()
            elif kind == "broken":
                (root / name).symlink_to(root / "nowhere.txt")
            elif kind == "loop":
                (root / name).symlink_to(root / name)
        return root

    return build


def big_file(folder):
    path = folder / "huge.txt"
    with path.open("wb") as handle:  # 50 MB of real words
        line = (STORY * 200).encode()
        while handle.tell() < 50_000_000:
            handle.write(line)
    return path


# (case id, builder, expected reason, file name the error must carry)
CASES = [
    ("empty", write("empty.txt", b""), "empty file", "empty.txt"),
    ("whitespace", write("blank.txt", " \n\t\r\n   "), "file has only whitespace", "blank.txt"),
    ("png", write("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(100)), "binary file (PNG image), not text", "photo.txt"),
    ("jpeg", write("photo.md", b"\xff\xd8\xff\xe0" + bytes(100)), "binary file (JPEG image), not text", "photo.md"),
    ("elf", write("tool.txt", b"\x7fELF\x02\x01\x01" + bytes(100)), "binary file (ELF executable), not text", "tool.txt"),
    ("pdf", write("paper.txt", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), "binary file (PDF document (not supported yet)), not text", "paper.txt"),
    ("zip", write("archive.md", b"PK\x03\x04" + bytes(100)), "binary file (ZIP archive (or .docx/.xlsx)), not text", "archive.md"),
    ("gzip", write("story.txt", gzip.compress(STORY.encode())), "binary file (gzip archive), not text", "story.txt"),
    ("nul-bytes", write("nul.txt", b"text\x00more" * 20), "binary file (contains NUL bytes), not text", "nul.txt"),
    ("undecodable", write("junk.txt", bytes(range(128, 256)) * 4), "not valid UTF-8 text and the encoding could not be detected", "junk.txt"),
    ("unsupported-type", write("table.xlsx", b"PK\x03\x04"), "unsupported file type '.xlsx' (use .txt, .md, .html, .json, .jsonl)", "table.xlsx"),
    ("no-suffix", write("README", STORY), "unsupported file type '(none)' (use .txt, .md, .html, .json, .jsonl)", "README"),
    ("over-size-limit", big_file, "file is 50.0 MB, over the 20 MB limit", "huge.txt"),
    ("boilerplate-only", write("furniture.txt", "2 photos\nSave Story\nEstimated read time: 3 minutes\n"), "no text left after cleaning (empty or only page boilerplate)", "furniture.txt"),
    ("control-chars-only", write("ctrl.txt", "\u200b\u200c\ufeff\x07\x1b\u2060\n"), "no text left after cleaning (empty or only page boilerplate)", "ctrl.txt"),
    ("html-only-scripts", write("page.html", "<html><head><style>p{}</style><script>alert(1)</script></head><body><iframe src='x'></iframe></body></html>"), "no article text found in the HTML", "page.html"),
    ("json-syntax", write("bad.json", '{"text": "unterminated'), "invalid JSON at line 1", "bad.json"),
    ("json-wrong-shape", write("shape.json", '"just a string"'), "JSON must be an object with 'text' or a list of such objects", "shape.json"),
    ("json-no-text", write("notext.json", '{"title": "A title only"}'), "field 'text' is missing or empty", "notext.json[0]"),
    ("json-text-not-string", write("number.json", '{"text": 42}'), "field 'text' must be a string, not int", "number.json[0]"),
    ("json-empty-list", write("none.json", "[]"), "no records", "none.json"),
    ("jsonl-all-bad", write("lines.jsonl", '{"text": \nnot json\n[1, 2]\n'), "invalid JSON (Expecting value)", "lines.jsonl:1"),
    ("fifo", fifo, "not a regular file", "pipe.txt"),
    ("missing", lambda folder: folder / "gone.txt", "no such file or folder", "gone.txt"),
    ("folder-fifo", folder_with(("fifo", "a.txt")), "not a regular file (a FIFO, socket or device)", "a.txt"),
    ("folder-socket", folder_with(("socket", "s.md")), "not a regular file (a FIFO, socket or device)", "s.md"),
    ("folder-broken-link", folder_with(("broken", "dead.txt")), "broken link or symlink loop", "dead.txt"),
    ("folder-symlink-loop", folder_with(("loop", "self.txt")), "broken link or symlink loop", "self.txt"),
]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    from qa.config import Settings
    from qa.models.embeddings import get_embedder
    from qa.library import Library

    lib = Library(str(tmp_path_factory.mktemp("bad-input") / "data"), "bad", settings=Settings(), embedder=get_embedder(Settings()))
    assert lib.ingest([SEED]).added
    return lib


def snapshot(lib):
    ids, texts, metas = lib.store.all_chunks()
    return lib.store.stamp(), sorted(ids), sorted((r.id, r.content_hash) for r in lib.articles())


@pytest.mark.parametrize("case, build, reason, name", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_with_one_line_and_changes_nothing(library, tmp_path, case, build, reason, name):
    before = snapshot(library)
    report = library.ingest([build(tmp_path)])
    assert not report.added and not report.replaced and report.chunks_added == 0
    assert report.rejected, f"{case} was not rejected"
    matching = [(source, why) for source, why in report.rejected if source.endswith(name)]
    assert matching, report.rejected
    assert any(reason in why for _, why in matching), report.rejected
    assert all("\n" not in f"{source}: {why}" for source, why in report.rejected)
    assert snapshot(library) == before


def test_same_text_under_two_new_names_in_one_ingest(library, tmp_path):
    before = snapshot(library)
    (tmp_path / "2020-01-01-one.txt").write_text("Harbor budget approved\n\n" + STORY * 3)
    (tmp_path / "2020-01-01-two.txt").write_text("Harbor budget approved\n\n" + STORY * 3)
    report = library.ingest([tmp_path])
    assert report.added == ["2020-01-01-one"]
    assert report.rejected == [(str(tmp_path / "2020-01-01-two.txt"), "same text as article '2020-01-01-one' (" + str(tmp_path / "2020-01-01-one.txt") + ")")]
    assert library.delete("2020-01-01-one")
    assert snapshot(library)[1:] == before[1:]


def test_same_text_as_a_stored_article(library, tmp_path):
    before = snapshot(library)
    copy = tmp_path / "copy-of-seed.txt"
    shutil.copy(SEED, copy)
    report = library.ingest([copy])
    assert report.rejected == [(str(copy), f"same text as stored article '{SEED.stem}' ({SEED})")]
    assert snapshot(library) == before


def test_json_bad_records_are_named_and_good_ones_kept(library, tmp_path):
    path = tmp_path / "feed.jsonl"
    good = {"id": f"feed-{uuid.uuid4().hex[:6]}", "title": "Ferry service resumes", "text": STORY * 2}
    path.write_text("\n".join([json.dumps(good), "{broken", json.dumps({"text": ""}), json.dumps([1])]) + "\n")
    report = library.ingest([path])
    assert report.added == [good["id"]]
    reasons = sorted(why for _, why in report.rejected)
    sources = sorted(source for source, _ in report.rejected)
    assert sources == [f"{path}:2", f"{path}:3", f"{path}:4"], report.rejected
    assert all(reasons)
    assert library.delete(good["id"])


def test_extremely_long_line_is_chunked_within_size(library, tmp_path):
    path = tmp_path / "2021-05-05-one-line.txt"
    path.write_text("Long line\n\n" + " ".join(f"word{i}" for i in range(30_000)))  # ~200 KB on one line
    report = library.ingest([path])
    assert report.added == ["2021-05-05-one-line"]
    hits = library.search("word12345", k=1, mode="keyword")
    assert hits and "word12345 " in hits[0].text
    assert max(len(h.text) for h in library.search("word", k=50, mode="vector")) <= library.settings.chunk_size
    assert library.delete("2021-05-05-one-line")


def test_symlink_to_parent_folder_does_not_loop(library, tmp_path):
    root = tmp_path / "nest"
    root.mkdir()
    (root / "2020-02-02-a.txt").write_text("Harbor news\n\nThe ferry timetable changes in spring, officials said.")
    (root / "up").symlink_to(tmp_path)
    report = library.ingest([root])
    assert report.added == ["2020-02-02-a"]
    assert library.delete("2020-02-02-a")


@pytest.mark.parametrize(
    "question, message",
    [
        ("", "question: is empty"),
        ("   \n\t ", "question: is empty"),
        ("?!... ,;", "question: has no words to search for"),
        ("why " * 2500, "question: is too long (9,999 characters; at most 2,000)"),
    ],
    ids=["empty", "blank", "punctuation", "10k-chars"],
)
def test_bad_questions_get_one_line_errors(library, question, message):
    from qa.errors import InputError

    with pytest.raises(InputError) as caught:
        library.search(question)
    assert str(caught.value) == message
