# Two commands: `make serve` and `make test`. Both set up .venv first (a no-op once done).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
DONE   := $(VENV)/.setup-done
# llama.cpp with its CPU code built once per CPU generation (x64 … haswell … skylakex, icelake,
# zen4, sapphirerapids) and the best one this CPU runs loaded at run time (qa/models/llms.py:
# load_cpu_backend): AVX-512/VNNI/AMX where present, AVX2 where not, no "Illegal instruction".
# Not -march=native: a wheel built here may run on another machine. (~10 min on 2 cores, once.)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
# pip reuses a cached llama-cpp-python wheel whatever CMAKE_ARGS say: one built before (AVX2 only,
# no variants) is rebuilt once.
HAS_VARIANTS := import llama_cpp, pathlib, sys; sys.exit(not any((pathlib.Path(llama_cpp.__file__).parents[1] / 'bin').glob('libggml-cpu-*.so')))

.PHONY: setup serve test bench clean browser
setup: $(DONE)

# Re-runs only when pyproject.toml changes. torch goes first and pinned: an unpinned
# torch pulls a multi-GB CUDA build.
$(DONE): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q -e '.[all]'
	$(BIN)/python -c "$(HAS_VARIANTS)" || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --no-cache-dir \
		--force-reinstall --no-deps "llama-cpp-python==$$($(BIN)/python -c 'import llama_cpp; print(llama_cpp.__version__)')"
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
