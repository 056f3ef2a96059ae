# asynclm — the make targets are the interface to the project.
#   make demo    install everything (venv, llama.cpp engine, default model) and run the demo
#   make test    install everything and run the whole test suite (slow real-model tests too)
#   make bench   run the benchmarks; results land in benchmarks/results/
#   make lint    ruff, mypy on src/ and the import contracts (fast; CI runs it before the tests)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
EXTRAS ?= cli,plot,test,llama,serve,http,hf,test-server,bfcl,mcp,otel,lint
DEMO_MODEL ?= qwen2.5-coder-1.5b
TEST_MODEL ?= qwen2.5-coder-0.5b
# llama-cpp-python is built from source on first install (2-4 minutes on 2 cores; pip caches
# the wheel, later installs are instant). On x86-64 it is built without AMX: llama.cpp 0.3.36's
# AMX matrix kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) on the first eval on CPUs that
# have AMX (Xeon Sapphire Rapids and later), and -march=native turns them on there.
AMX_OFF := $(if $(filter x86_64,$(shell uname -m)),-DCMAKE_C_FLAGS=-mno-amx-int8 -DCMAKE_CXX_FLAGS=-mno-amx-int8)
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF $(AMX_OFF)
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install browser llama-server demo demo-sim lint test test-fast test-pythons bench finetune-data clean

$(STAMP):
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "Installing asynclm[$(EXTRAS)] (building the llama.cpp engine the first time: 2-4 min)..."
	$(BIN)/pip install --progress-bar on -e ".[$(EXTRAS)]"
	@# BFCL data and checker; its declared dependencies are huge and not needed.
	$(BIN)/pip install -q --no-deps "bfcl-eval==2026.3.23"
	@# An engine built with AMX (a wheel cached before AMX was turned off) is rebuilt, from
	@# source: the cached wheel is dropped and not read. (The same check as
	@# asynclm.engines._llama.has_amx_kernels, without importing asynclm.)
	@if $(BIN)/python -c "import sys, llama_cpp; sys.exit(b'AMX_INT8 = 1' not in llama_cpp.llama_print_system_info())" 2>/dev/null; then \
	  echo "Rebuilding the llama.cpp engine without AMX (its AMX kernels crash)..."; \
	  $(BIN)/pip cache remove "llama_cpp_python*" >/dev/null 2>&1 || true; \
	  $(BIN)/pip install -q --no-cache-dir --force-reinstall --no-deps \
	    "llama-cpp-python==$$($(BIN)/python -c 'import llama_cpp; print(llama_cpp.__version__)')"; fi
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The browser test drives Debian's Chromium through Playwright (Playwright's own browser
# download needs the internet; Debian's package comes from the package registry).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium; } \
	  || echo "warning: could not install Chromium; the browser test will say it skipped"

demo: install
	$(BIN)/asynclm models pull $(DEMO_MODEL)
	$(BIN)/asynclm demo --model $(DEMO_MODEL)

demo-sim: install
	$(BIN)/asynclm demo --engine sim

# Lint: ruff, mypy on src/ (configured in pyproject.toml), and the layers (import-linter's
# contracts in pyproject.toml: the core imports no app or research code; no cycles).
lint: install
	$(BIN)/ruff check src
	$(BIN)/mypy src
	$(BIN)/lint-imports

# llama.cpp's C++ server, a comparison and a real server for the tests only (never a dependency
# of asynclm): built from the llama.cpp sources inside the llama-cpp-python source package
# (extracted into ~/.cache/asynclm/src, where the tests also read the official chat templates)
# into ~/.cache/asynclm/bin/llama-server: 5-8 minutes on 2 cores the first time.
llama-server: install
	scripts/llama-cpp-source.sh $(BIN)/python >/dev/null
	scripts/build-llama-server.sh $(BIN)/python >/dev/null

test: install browser llama-server
	$(BIN)/asynclm models pull $(TEST_MODEL)
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow"

# The fast suite on the other Pythons found here (python3.12/3.13 on PATH, or pyenv's), each in
# .venv-py<version>; the llama.cpp engine is left out (its tests say they skipped).
PYTHONS ?= $(wildcard $(HOME)/.pyenv/versions/3.1[23].*/bin/python3) python3.12 python3.13
test-pythons:
	@for py in $(PYTHONS); do \
	  ver=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue; \
	  v=.venv-py$$ver; test -x $$v/bin/python || $$py -m venv $$v || exit 1; \
	  $$v/bin/pip install -q -e ".[cli,plot,test,serve,openai,bfcl]" && \
	  $$v/bin/pip install -q --no-deps "bfcl-eval==2026.3.23" || exit 1; \
	done
	@ran=0; for v in .venv-py3.*; do test -x $$v/bin/pytest || continue; ran=1; \
	  echo "== $$v"; $$v/bin/pytest -q -m "not slow" || exit 1; done; \
	  test $$ran = 1 || echo "no other Python found (PYTHONS=$(PYTHONS))"

bench: install llama-server
	$(BIN)/asynclm models pull $(DEMO_MODEL)
	$(BIN)/python benchmarks/run_all.py

# Training transcripts for `asynclm finetune train` (needs only the core and bfcl-eval).
finetune-data: install
	$(BIN)/asynclm finetune data --out finetune/train.jsonl

clean:
	rm -rf $(VENV) .venv-py3.* .pytest_cache .hypothesis
