#!/usr/bin/env bash
# Build llama.cpp's C++ server (llama-server) from the llama.cpp sources inside the
# llama-cpp-python source package of the installed version (scripts/llama-cpp-source.sh), into
# the user cache. A test-time comparison only (bench serving, the --engine-url tests): never a
# dependency of asynclm. Prints the binary's path.
#   usage: scripts/build-llama-server.sh [PYTHON]
set -euo pipefail
PYTHON=${1:-.venv/bin/python}
DEST=${ASYNCLM_HOME:-$HOME/.cache/asynclm}/bin
BIN=$DEST/llama-server
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
SRC=$("$(dirname "$0")/llama-cpp-source.sh" "$PYTHON")/vendor/llama.cpp
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FLAGS=""
# llama.cpp's AMX kernels crash on the first eval (see the Makefile): built without them.
if [ "$(uname -m)" = x86_64 ]; then FLAGS="-mno-amx-int8"; fi
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
cmake -S "$SRC" -B "$WORK/build" $GEN -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" >&2
cmake --build "$WORK/build" --target llama-server -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}" >&2
mkdir -p "$DEST"
cp "$WORK/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
echo "$BIN"
