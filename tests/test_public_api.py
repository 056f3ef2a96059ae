"""The curated public API, and a slim core: heavy extras are never imported by ``import asynclm``."""

from __future__ import annotations

import subprocess
import sys

import asynclm


def test_all_names_exist():
    for name in asynclm.__all__:
        assert hasattr(asynclm, name), name


def test_core_import_is_slim():
    code = (
        "import sys, asynclm\n"
        "heavy = [m for m in ('matplotlib', 'typer', 'rich', 'llama_cpp', 'numpy', 'httpx',"
        " 'fastapi', 'uvicorn', 'starlette', 'asynclm.engines.llamacpp',"
        " 'asynclm.engines.openai_http')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_engines_behind_extras_are_exported_lazily():
    from asynclm.engines.llamacpp import LlamaCppEngine
    from asynclm.engines.openai_http import HttpEngine

    assert asynclm.LlamaCppEngine is LlamaCppEngine and asynclm.HttpEngine is HttpEngine
