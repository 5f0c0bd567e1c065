"""Finding evidence: hybrid retrieval (vectors + BM25 + sentences) and the fitted evidence ranking."""
