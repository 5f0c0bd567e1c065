"""Retrieval pieces that need no store: query tokens, sentence-vector packing."""

from __future__ import annotations

import numpy as np

from qa.text.chunking import sentence_spans
from qa.text.tokens import bm25s_tokenize, tokenize
from qa.store.chroma import pack_sentences, rows_to_vectors, sentence_offsets, sentence_rows

from .conftest import SEED


def test_query_tokens_are_the_index_tokens():
    """tokenize() (queries, sentence overlap) must give bm25s.tokenize()'s tokens (the index)."""
    text = SEED.read_text()
    texts = [text[s:e] for s, e in sentence_spans(text)] + ["", "  ", "!!", "the a of", "J.", "Café déjà-vu in 1999, x2"]
    assert [tokenize(t) for t in texts] == bm25s_tokenize(texts)


def test_sentence_vectors_round_trip_through_chunk_metadata():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    meta = pack_sentences(100, [(100, 180), (181, 260), (261, 300)], vectors)
    assert sentence_offsets(meta) == [(0, 80), (81, 160), (161, 200)]
    back = rows_to_vectors(sentence_rows(meta))
    assert back.shape == (3, 384)
    assert np.allclose((back * vectors).sum(axis=1), 1.0, atol=1e-3)  # int8 keeps the direction
    assert sentence_rows({}) is None and sentence_rows({"sentences": "0:5", "sentence_vector_0": "!!"}) is None
    assert sentence_rows({"sentences": "0:5 6:9", "sentence_vector_0": meta["sentence_vector_0"]}) is None  # one missing
    kept = dict(meta)
    assert sentence_rows(kept, remove=True) is not None and set(kept) == {"sentences"}  # the cache keeps rows, not strings
