"""One module per answer route; the chain (qa/answer/chain.py) picks the route by the kind of question."""
