"""Where articles live: the Chroma store (chunks and the article registry), the lexical index beside it, metadata filters."""
