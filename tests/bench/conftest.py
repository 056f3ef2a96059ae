"""BFCL benchmark tests need the bfcl-eval package (installed --no-deps); they skip without it."""

from __future__ import annotations

import pytest

from asynclm.bench.bfcl import available

_NO_DATA = ("test_bfcl_timing.py", "test_bfcl_bound.py")  # these need no BFCL data


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if available():
        return
    skip = pytest.mark.skip(reason='bfcl-eval is not installed: pip install --no-deps '
                                   '"bfcl-eval==2026.3.23" mpmath')
    for item in items:
        name = item.path.name
        if name.startswith("test_bfcl") and name not in _NO_DATA:
            item.add_marker(skip)
