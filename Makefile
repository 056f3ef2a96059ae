# asynclm — the make targets are the interface to the project.
#   make demo    install everything (venv, llama.cpp engine, default model) and run the demo
#   make test    install everything and run the whole test suite (slow real-model tests too)
#   make bench   run the benchmarks; results land in benchmarks/results/
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
EXTRAS ?= cli,plot,test,llama,openai,hf,test-server
DEMO_MODEL ?= qwen2.5-coder-1.5b
TEST_MODEL ?= qwen2.5-coder-0.5b
# llama-cpp-python is built from source on first install (2-4 minutes on 2 cores; pip caches
# the wheel, later installs are instant).
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install demo demo-sim test test-fast bench clean

$(STAMP):
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "Installing asynclm[$(EXTRAS)] (building the llama.cpp engine the first time: 2-4 min)..."
	$(BIN)/pip install --progress-bar on -e ".[$(EXTRAS)]"
	@# BFCL data and checker; its declared dependencies are huge and not needed.
	$(BIN)/pip install -q --no-deps "bfcl-eval==2026.3.23"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/asynclm models pull $(DEMO_MODEL)
	$(BIN)/asynclm demo --model $(DEMO_MODEL)

demo-sim: install
	$(BIN)/asynclm demo --engine sim

test: install
	$(BIN)/asynclm models pull $(TEST_MODEL)
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow"

bench: install
	$(BIN)/asynclm models pull $(DEMO_MODEL)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
