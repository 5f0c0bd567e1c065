from __future__ import annotations

import pytest

from qa.ingest.articles import load_file
from qa.text.chunking import chunk_text, sentence_spans

from .conftest import SEED


@pytest.fixture(scope="module")
def seed_text():
    return load_file(SEED).articles[0].text


@pytest.mark.parametrize("size, overlap", [(320, 0), (200, 80), (1000, 100)])
def test_offsets_are_exact_and_sizes_bounded(seed_text, size, overlap):
    chunks = chunk_text(seed_text, size, overlap)
    assert chunks
    for chunk in chunks:
        assert seed_text[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text) <= size
    # Every sentence lies wholly inside at least one chunk.
    for start, end in sentence_spans(seed_text):
        if end - start <= size:
            assert any(c.start <= start and end <= c.end for c in chunks), seed_text[start:end]


def test_chunks_end_on_sentence_boundaries(seed_text):
    ends = {end for _, end in sentence_spans(seed_text)}
    assert all(c.end in ends for c in chunk_text(seed_text, 320, 0))


def test_overlap_repeats_preceding_sentences(seed_text):
    plain = chunk_text(seed_text, 300, 0)
    overlapped = chunk_text(seed_text, 300, 150)
    assert len(overlapped) > len(plain)
    assert any(b.start < a.end for a, b in zip(overlapped, overlapped[1:]))
    assert all(b.start >= a.end for a, b in zip(plain, plain[1:]))


def test_long_sentence_is_split_at_spaces():
    text = " ".join(f"word{i}" for i in range(200)) + "."
    chunks = chunk_text(text, 100, 0)
    assert len(chunks) > 5
    assert all(len(c.text) <= 100 and text[c.start : c.end] == c.text for c in chunks)
    assert all(not c.text.startswith(" ") for c in chunks)


def test_paragraphs_do_not_merge_sentences():
    text = "First paragraph has no full stop\n\nSecond one starts here. And ends."
    starts = [text[s:e] for s, e in sentence_spans(text)]
    assert starts[0] == "First paragraph has no full stop"


def test_bad_sizes_rejected():
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("Some text.", 100, 100)
