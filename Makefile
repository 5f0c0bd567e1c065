# Two commands: `make serve` and `make test`. Both set up .venv first (a no-op once done).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
DONE   := $(VENV)/.setup-done
# llama.cpp built for AVX2 CPUs, not -march=native: native builds enable AMX/AVX-512 code that
# dies with "Illegal instruction" in some VMs and sandboxes that advertise those features.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF

.PHONY: setup serve test bench clean browser
setup: $(DONE)

# Re-runs only when pyproject.toml changes. torch goes first and pinned: an unpinned
# torch pulls a multi-GB CUDA build.
$(DONE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q -e '.[all]'
	touch $@

# Ingest is idempotent: unchanged seed articles cost one lookup each.
serve: setup
	$(BIN)/qa ingest seeds/
	$(BIN)/qa serve --host 127.0.0.1 --port 7860

# The browser tests drive Debian's Chromium (no browser download); installed here when missing.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: setup browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m benchmarks retrieval

clean:
	rm -rf $(VENV) .qa-data
