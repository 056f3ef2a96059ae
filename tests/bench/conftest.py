"""BFCL benchmark tests need the bfcl-eval package (installed --no-deps); they skip without it."""

from __future__ import annotations

import pytest

from asynclm.bench.bfcl import available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if available():
        return
    skip = pytest.mark.skip(reason='bfcl-eval is not installed: pip install --no-deps '
                                   '"bfcl-eval==2026.3.23" mpmath')
    for item in items:
        name = item.path.name
        if name.startswith("test_bfcl") and name != "test_bfcl_timing.py":  # timing needs no data
            item.add_marker(skip)
