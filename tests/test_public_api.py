"""The curated public API, and a slim core: heavy extras are never imported by
``import asynclm``."""

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


# what an application writes: sessions, tools, engines, stream events, errors, the trace
APPLICATION = {
    "Session", "SessionConfig", "SessionResult", "CallRecord", "RunControl", "run_sync",
    "run_virtual", "tool", "Tool", "Toolbox", "ToolContext", "Ordered", "SERIAL", "run_process",
    "ProcessResult", "Engine", "ChatMessage", "LlamaCppEngine", "HttpEngine", "StreamEvent",
    "TextDelta", "CallDelta", "CallEmitted", "CallStarted", "CallProgress", "CallCompleted",
    "InterruptInjected", "RollbackEvent", "TrapEvent", "Done", "AsyncLMError", "ToolError",
    "Trace", "__version__",
}
# internals, each reachable from its own subpackage instead
ELSEWHERE = {
    "Parser": "asynclm.protocol", "Markers": "asynclm.protocol",
    "DEFAULT_MARKERS": "asynclm.protocol", "Ref": "asynclm.protocol",
    "STRATEGIES": "asynclm.runtime", "Strategy": "asynclm.runtime",
    "Capabilities": "asynclm.engines.base", "Breakdown": "asynclm.trace",
    "SimEngine": "asynclm.testing", "InstantEngine": "asynclm.testing",
    "FakeServer": "asynclm.testing.http",
}


def test_the_top_level_is_what_an_application_uses():
    import importlib

    assert APPLICATION <= set(asynclm.__all__)
    for name, module in ELSEWHERE.items():
        assert name not in asynclm.__all__ and not hasattr(asynclm, name), name
        assert hasattr(importlib.import_module(module), name), (module, name)


def test_examples_and_readme_use_only_the_top_level_api():
    """Every ``from asynclm import ...`` in the README, docs and examples names a public name."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md", *(root / "docs").glob("*.md"), *(root / "examples").glob("*.py")]
    found = set()
    for f in files:
        for m in re.finditer(r"from asynclm import (\([^)]*\)|[^\n]*)",
                             f.read_text(encoding="utf-8")):
            found |= {n.strip() for n in m.group(1).strip("()").split(",") if n.strip()}
    assert found and found <= set(asynclm.__all__), found - set(asynclm.__all__)
