"""Fine-tuning tests: the data tests need bfcl-eval; the training/export tests need the
``finetune`` extra (torch, transformers, peft, gguf). Each skips without what it needs."""

from __future__ import annotations

import importlib.util

import pytest

from asynclm.bench.bfcl import available


def has_training_stack() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("torch", "transformers", "peft", "gguf"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not available():
        skip = pytest.mark.skip(reason='bfcl-eval is not installed: pip install --no-deps '
                                       '"bfcl-eval==2026.3.23" mpmath')
        for item in items:
            if item.path.name == "test_finetune_data.py":
                item.add_marker(skip)
