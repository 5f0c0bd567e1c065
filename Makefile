# Two commands: `make serve` and `make test`. Both set up .venv first (a no-op once done).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
DONE   := $(VENV)/.setup-done

.PHONY: setup serve test bench clean
setup: $(DONE)

# Re-runs only when pyproject.toml changes. torch goes first and pinned: an unpinned
# torch pulls a multi-GB CUDA build.
$(DONE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	touch $@

serve: setup
	$(BIN)/qa ingest seeds/
	$(BIN)/qa search "Who said GSOMIA scrapping was a misjudgment?" -k 3

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m benchmarks retrieval

clean:
	rm -rf $(VENV) .qa-data
