"""Wire copies: the same agency story (AP, Reuters, AFP) republished by several outlets, each a
little edited (headline changed, a paragraph cut, a local line added).

A new article whose text is a near-duplicate of a stored story's is kept as another publisher of
that story, not as a second story: it is listed and deletable, but has no chunks of its own, so
search returns the story once and answers cite one copy, listing the others as "also published
by". Near-duplicate means: the MinHash (datasketch) estimate of the Jaccard similarity of the two
texts' word 5-shingles is at least THRESHOLD. Candidates come from locality-sensitive hashing: the
signature's bands are stored as registry metadata, so finding them is an indexed lookup in Chroma,
shared by every process, with no index of its own to keep in step. THRESHOLD is the one chosen by
`python -m benchmarks feeds` (edited copies of the repository's articles; see the README).
"""

from __future__ import annotations

import base64
import hashlib
import re
import numpy as np

NUM_PERM = 128
SHINGLE_WORDS = 5
# Chosen with `python -m benchmarks feeds` (see the README): edited copies scored 0.43 and up,
# different articles (same topic included) 0.02 at most; 0.3 to 0.4 all gave precision and recall 1.0,
# and the higher end keeps a margin against merging two stories (a merged story hides one from search).
THRESHOLD = 0.4
# LSH bands: 42 bands of 3 rows. A pair at similarity s shares a band with probability
# 1 - (1 - s**3)**42: 0.94 at 0.4, 0.98 at 0.45 (the verification threshold decides, not the bands),
# and 0.0003 at 0.02, so an ingest reads a handful of candidates even in a large archive.
BANDS, ROWS = 42, 3
SIGNATURE_KEY = "wire_signature"
BAND_KEY = "wire_band_{}"
MIN_WORDS = 40  # shorter texts share too few shingles to judge (briefs, captions)

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def signature(text: str) -> np.ndarray | None:
    """The MinHash signature of a text's word shingles (None for a text too short to judge)."""
    from datasketch import MinHash

    words = [w.lower() for w in _WORD_RE.findall(text)]
    if len(words) < MIN_WORDS:
        return None
    shingles = {" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(len(words) - SHINGLE_WORDS + 1)}
    minhash = MinHash(num_perm=NUM_PERM, seed=1)
    minhash.update_batch(list(shingles))
    return minhash.hashvalues.astype(np.uint32)  # values below 2**32 by construction


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the shingle sets."""
    return float(np.mean(a == b))


def bands(sig: np.ndarray) -> dict[str, str]:
    """Registry metadata for a signature: the signature itself and one hash per LSH band."""
    b, r = BANDS, ROWS
    meta = {SIGNATURE_KEY: base64.b64encode(sig.astype("<u4").tobytes()).decode("ascii")}
    for i in range(b):
        meta[BAND_KEY.format(i)] = hashlib.blake2b(sig[i * r : (i + 1) * r].astype("<u4").tobytes(), digest_size=8).hexdigest()
    return meta


def signature_of(meta: dict) -> np.ndarray | None:
    packed = meta.get(SIGNATURE_KEY)
    if not packed:
        return None
    try:
        return np.frombuffer(base64.b64decode(packed), dtype="<u4")
    except ValueError:
        return None


def band_query(metas: list[dict]) -> dict | None:
    """A Chroma `where` that finds registry records sharing a band with any of these signatures."""
    b = BANDS
    clauses = []
    for i in range(b):
        values = sorted({m[BAND_KEY.format(i)] for m in metas if BAND_KEY.format(i) in m})
        if values:
            clauses.append({BAND_KEY.format(i): {"$in": values}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def best_match(sig: np.ndarray, candidates: list[tuple[str, np.ndarray]]) -> tuple[str, float] | None:
    """The most similar candidate at or above THRESHOLD, as (id, similarity)."""
    scored = [(candidate_id, similarity(sig, other)) for candidate_id, other in candidates if other is not None and len(other) == len(sig)]
    scored = [pair for pair in scored if pair[1] >= THRESHOLD]
    return max(scored, key=lambda pair: (pair[1], pair[0])) if scored else None
