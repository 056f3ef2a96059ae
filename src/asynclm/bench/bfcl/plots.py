"""Plots of the reproduction (matplotlib, imported lazily; extra ``plot``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_plots"]


def write_plots(result: Mapping[str, Any], folder: Path) -> list[Path]:
    """Placeholder until the plotting module lands: writes nothing."""
    return []
