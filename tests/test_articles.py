"""Loading and cleaning: the seed's page furniture goes, its metadata stays, bad input is named."""

from __future__ import annotations

import json

import pytest

from qa.ingest.articles import iter_files, load_file
from qa.errors import InputError

from .conftest import SEED


def test_seed_is_cleaned_to_the_story_with_metadata():
    (article,) = load_file(SEED).articles
    assert article.id == "2019-11-12-japan-us-gsomia"
    assert article.title == "Japan, US say 3-way ties with S. Korea are key to security"
    assert article.published == "2019-11-12"
    assert article.dateline == "TOKYO"
    assert article.author == "Mari Yamaguchi"
    assert article.text.startswith("TOKYO (AP) — The chairman of the U.S. Joint Chiefs of Staff")
    assert article.text.endswith("He said export controls and security issues should not be linked.")
    for furniture in ("2 photos", "Save Story", "Estimated read time", "archived news story", "Follow Mari",
                      "Copyright", "All rights reserved", "Most recent World stories", "Related topics",
                      "Subscribe", "By subscribing", "KSL Weather Forecast"):
        assert furniture not in article.text, furniture
    assert "complete misjudgment of the current regional security environment" in article.text
    assert "\n\n" in article.text  # paragraphs survive


def test_latin1_and_utf16_are_decoded(tmp_path):
    story = "Café owners in Zürich said the façade would reopen next week after repairs."
    latin = tmp_path / "latin.txt"
    latin.write_bytes(story.encode("latin-1"))
    utf16 = tmp_path / "wide.txt"
    utf16.write_bytes(story.encode("utf-16"))  # with BOM
    assert load_file(latin).articles[0].text == story
    assert load_file(utf16).articles[0].text == story


def test_invisible_and_control_characters_are_removed(tmp_path):
    path = tmp_path / "zw.txt"
    path.write_text("The min\u200bister\u0007 said the talks\ufeff would resume on Monday.", encoding="utf-8")
    assert load_file(path).articles[0].text == "The minister said the talks would resume on Monday."


def test_html_keeps_text_drops_scripts(tmp_path):
    path = tmp_path / "page.html"
    body = " ".join(["The council voted on Monday to expand the harbour by forty metres."] * 4)
    path.write_text(
        f"<html><head><title>Harbour vote</title><style>p{{color:red}}</style>"
        f"<script>alert('x')</script></head><body><nav>Home | World</nav>"
        f"<article><h1>Harbour vote</h1><p>{body}</p><p>{body}</p></article>"
        f"<iframe src='x'></iframe></body></html>",
        encoding="utf-8",
    )
    (article,) = load_file(path).articles
    assert "expand the harbour by forty metres" in article.text
    assert "alert" not in article.text and "color:red" not in article.text
    assert article.title == "Harbour vote"


def test_markdown_links_keep_their_words(tmp_path):
    path = tmp_path / "note.md"
    path.write_text("# Port strike ends\n\nDock workers [returned](http://x.example/a) to work on **Friday**.\n")
    (article,) = load_file(path).articles
    assert article.title == "Port strike ends"
    assert article.text == "Dock workers returned to work on Friday."


def test_jsonl_keeps_good_records_and_names_bad_lines(tmp_path):
    path = tmp_path / "feed.jsonl"
    path.write_text(
        json.dumps({"text": "Rain closed the northern road on Sunday.", "title": "Road closed", "published": "2020-01-05"})
        + "\n{not json\n"
        + json.dumps({"title": "no text here"}) + "\n"
        + json.dumps({"text": "Snow reopened debates about the pass.", "url": "https://news.example/snow"}) + "\n"
    )
    result = load_file(path)
    assert [a.title for a in result.articles] == ["Road closed", "https://news.example/snow"]
    assert result.articles[0].published == "2020-01-05"
    assert [str(e) for e in result.errors] == [
        f"{path}:2: invalid JSON (Expecting property name enclosed in double quotes)",
        f"{path}:3: field 'text' is missing or empty",
    ]


def test_json_list_of_records(tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps([{"id": "a1", "text": "First story text."}, {"id": "a2", "text": "Second story text."}]))
    assert [a.id for a in load_file(path).articles] == ["a1", "a2"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.txt", b"", "empty file"),
        ("blank.txt", b"  \n\t \n", "file has only whitespace"),
        ("image.txt", b"\x89PNG\r\n\x1a\n" + bytes(64), "binary file (PNG image), not text"),
        ("prog.txt", b"\x7fELF\x02\x01\x01" + bytes(64), "binary file (ELF executable), not text"),
        ("nul.txt", b"abc\x00def" * 10, "binary file (contains NUL bytes), not text"),
        ("junk.txt", bytes(range(128, 256)) * 3, "not valid UTF-8 text and the encoding could not be detected"),
        ("sheet.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx' (use .txt, .md, .html, .json, .jsonl)"),
        ("bad.json", b'{"text": ', "invalid JSON at line 1 (Expecting value)"),
        ("shape.json", b'"just a string"', "JSON must be an object with 'text' or a list of such objects"),
        ("furniture.txt", b"Save Story\n\nEstimated read time: 2 minutes\n", "no text left after cleaning (empty or only page boilerplate)"),
    ],
)
def test_rejected_inputs_have_clear_messages(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_file(path)
    assert str(caught.value) == f"{path}: {message}"


def test_size_limit(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 300_000)
    with pytest.raises(InputError, match=r"big.txt: file is 1.5 MB, over the 1 MB limit"):
        load_file(path, max_bytes=1_000_000)


def test_folders_expand_and_missing_paths_are_reported(tmp_path):
    (tmp_path / "a.txt").write_text("A story.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("B story.")
    (tmp_path / "skip.png").write_bytes(b"\x89PNG")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    files, errors = iter_files([tmp_path, tmp_path / "missing.txt"])
    assert sorted(f.name for f in files) == ["a.txt", "b.md"]
    assert f"{tmp_path / 'missing.txt'}: no such file or folder" in [str(e) for e in errors]
