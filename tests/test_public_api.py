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
        " 'fastapi', 'uvicorn', 'starlette')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
