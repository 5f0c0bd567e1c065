"""Sentence-aware chunks that keep exact character offsets into the cleaned article text.

Offsets matter twice: citations quote `text[start:end]`, and the recall benchmark checks that a
retrieved chunk covers the gold answer span. So chunks are built from sentence spans, never from
re-joined strings, and `text[chunk.start:chunk.end] == chunk.text` always holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int
    end: int
    index: int
    # (start, end) article offsets of the sentences it packs (a long sentence's pieces count as
    # sentences): each gets its own vector, so search can rank and return single sentences.
    sentences: tuple[tuple[int, int], ...] = ()


@lru_cache(maxsize=1)
def _punkt():
    """NLTK's Punkt sentence model from the copy llama-index-core ships (no download)."""
    from importlib.util import find_spec

    import nltk
    from nltk.tokenize.punkt import PunktTokenizer

    # Located, not imported: importing llama_index.core costs ~2 s on a cold start.
    core_dir = Path(find_spec("llama_index.core").submodule_search_locations[0])
    bundled = str(core_dir / "_static" / "nltk_cache")
    if bundled not in nltk.data.path:
        nltk.data.path.append(bundled)
    return PunktTokenizer("english")


_PARAGRAPH_RE = re.compile(r"\S(?:.*?\S)?(?=\n\s*\n|\s*\Z)", re.DOTALL)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence; sentences never cross a blank-line paragraph break."""
    tokenizer = _punkt()
    spans = []
    for para in _PARAGRAPH_RE.finditer(text):
        base = para.start()
        for start, end in tokenizer.span_tokenize(para.group(0)):
            spans.append((base + start, base + end))
    return spans


def _split_long(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """A sentence longer than `size`: cut at the last space before the limit."""
    pieces = []
    while end - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        cut = cut if cut > start else start + size
        pieces.append((start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def chunk_text(text: str, size: int = 320, overlap: int = 0) -> list[Chunk]:
    """Pack whole sentences into chunks of at most `size` characters (a longer sentence is
    split at spaces); each chunk starts with up to `overlap` characters of preceding sentences."""
    if size < 20:
        raise ValueError("chunk size must be at least 20 characters")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be between 0 and the chunk size")
    units: list[tuple[int, int]] = []
    for start, end in sentence_spans(text):
        units.extend(_split_long(text, start, end, size))

    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        first = i
        # Step back over preceding sentences that fit in the overlap budget.
        while (
            overlap
            and first > 0
            and units[i][0] - units[first - 1][0] <= overlap
            and units[i][1] - units[first - 1][0] <= size
        ):
            first -= 1
        start = units[first][0]
        j = i
        while j + 1 < len(units) and units[j + 1][1] - start <= size:
            j += 1
        end = units[j][1]
        chunks.append(Chunk(text[start:end], start, end, len(chunks), tuple(units[first : j + 1])))
        i = j + 1
    return chunks
