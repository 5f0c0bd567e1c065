"""From evidence to an answer: the chain, what a question asks, dates, the reader, summaries and timelines, metrics."""
