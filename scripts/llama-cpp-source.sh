#!/usr/bin/env bash
# The llama.cpp sources inside the llama-cpp-python source package of the installed version,
# extracted once into the user cache (read by tests: the official chat templates under
# vendor/llama.cpp/models/templates/; and by scripts/build-llama-server.sh). Prints the
# package's directory. Nothing of it enters the repository.
#   usage: scripts/llama-cpp-source.sh [PYTHON]
set -euo pipefail
PYTHON=${1:-.venv/bin/python}
VERSION=$("$PYTHON" -c 'import llama_cpp; print(llama_cpp.__version__)')
ROOT=${ASYNCLM_HOME:-$HOME/.cache/asynclm}/src
DIR=$ROOT/llama_cpp_python-$VERSION
if [ -f "$DIR/.complete" ]; then echo "$DIR"; exit 0; fi
mkdir -p "$ROOT"
WORK=$(mktemp -d "$ROOT/.tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$WORK" \
  "llama-cpp-python==$VERSION" >&2 2>/dev/null || \
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$VERSION" >&2
tar -xzf "$WORK"/llama_cpp_python-*.tar.gz -C "$WORK"
rm -rf "$DIR"
mv "$WORK/llama_cpp_python-$VERSION" "$DIR"
touch "$DIR/.complete"
echo "$DIR"
