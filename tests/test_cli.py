"""The `qa` command as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import SEED

QA = [str(Path(sys.executable).parent / "qa")]


def qa(*args, cwd):
    return subprocess.run(QA + list(args), cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ingest_search_articles_delete(tmp_path):
    bad = tmp_path / "in" / "photo.txt"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    (tmp_path / "in" / SEED.name).write_bytes(SEED.read_bytes())

    first = qa("ingest", "in", cwd=tmp_path)
    assert first.returncode == 1  # one file rejected
    assert f"rejected: {Path('in') / 'photo.txt'}: binary file (PNG image), not text" in first.stderr
    assert "1 added, 0 unchanged, 0 replaced, 1 rejected" in first.stdout
    assert "Traceback" not in first.stderr

    again = qa("ingest", f"in/{SEED.name}", cwd=tmp_path)
    assert again.returncode == 0 and "0 added, 1 unchanged" in again.stdout

    found = qa("search", "--json", "-k", "3", "Who said GSOMIA scrapping was a misjudgment?", cwd=tmp_path)
    hits = json.loads(found.stdout)
    assert any("complete misjudgment" in h["text"] for h in hits)
    within = json.loads(qa("search", "--json", "--chars", "400", "Who said GSOMIA scrapping was a misjudgment?", cwd=tmp_path).stdout)
    assert "complete misjudgment" in within[0]["text"] and sum(len(h["text"]) for h in within) <= 400
    zero = qa("search", "--chars", "0", "x", cwd=tmp_path)
    assert zero.returncode == 2 and zero.stderr.strip() == "error: --chars must be at least 1"

    checked = qa("check", cwd=tmp_path)
    assert checked.returncode == 0
    assert checked.stdout.strip() == "1 articles, 13 chunks, 0 orphan chunks, 0 incomplete articles, 0 articles behind in the lexical index"

    listed = qa("articles", cwd=tmp_path)
    assert "2019-11-12-japan-us-gsomia\t2019-11-12\t" in listed.stdout

    assert qa("delete", "2019-11-12-japan-us-gsomia", cwd=tmp_path).returncode == 0
    missing = qa("delete", "2019-11-12-japan-us-gsomia", cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: no article '2019-11-12-japan-us-gsomia'"
    assert "No articles yet" in qa("articles", cwd=tmp_path).stdout


def test_errors_are_one_line(tmp_path):
    bad_date = qa("search", "x", "--date-from", "yesterday", cwd=tmp_path)
    assert bad_date.returncode == 2
    assert bad_date.stderr.strip() == "error: filters.date_from: not a calendar date YYYY-MM-DD: 'yesterday'"
    bad_name = qa("--collection", "x", "articles", cwd=tmp_path)
    assert bad_name.returncode == 2 and bad_name.stderr.startswith("error: collection 'x': ")
    assert len(bad_name.stderr.strip().splitlines()) == 1
    down = qa("--chroma-url", "http://127.0.0.1:9", "articles", cwd=tmp_path)
    assert down.returncode == 2 and down.stderr.startswith("error: cannot open Chroma at http://127.0.0.1:9")
    missing = qa("ingest", "nowhere.txt", cwd=tmp_path)
    assert missing.returncode == 1 and "rejected: nowhere.txt: no such file or folder" in missing.stderr


def test_help_and_listing_do_not_load_torch_or_llama_cpp(tmp_path):
    """`qa --help` and `qa articles` stay fast: the heavy libraries load only when needed."""
    probe = (
        "import sys\n"
        "from qa.cli import main\n"
        "sys.argv = ['qa'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'llama_cpp', 'sentence_transformers', 'gradio') if m in sys.modules))\n"
    )
    for args in (["--help"], ["articles"]):
        out = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.stdout.strip().splitlines()[-1] == "HEAVY []", (args, out.stdout[-500:], out.stderr[-500:])


def test_the_question_of_an_ask_is_read_ahead_of_typer():
    """`qa ask` starts spaCy and the model before typer parses the line: the question is found
    past any options, other commands start nothing, and a model option defers the model."""
    from qa.cli import _asked

    assert _asked(["ask", "Who?"]) == ("Who?", False)
    assert _asked(["--data-dir", "d", "-c", "news", "ask", "--json", "Who?"]) == ("Who?", False)
    assert _asked(["ask", "--backend", "openai", "Who?", "--json"]) == ("Who?", True)
    assert _asked(["ask", "--local-model=qwen2.5-coder-1.5b", "Who?"]) == ("Who?", True)
    assert _asked(["ingest", "ask"]) == (None, False)
    assert _asked(["ask", "--help"])[0] is None and _asked(["ask"])[0] is None
