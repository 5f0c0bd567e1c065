"""Text work without models: chunking into sentences and chunks, words and lemmas, BM25 tokens."""
