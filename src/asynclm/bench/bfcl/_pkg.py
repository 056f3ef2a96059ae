"""Importing the ``bfcl-eval`` package offline, without its (huge, unneeded) dependencies.

Two things must happen before anything of the package is imported (``reference/bfcl.md``):
``BFCL_PROJECT_ROOT`` must point at a writable scratch folder (some modules create folders there
on import), and ``bfcl_eval.constants.model_config`` — which pulls in every provider SDK — is
replaced by a stub whose mapping answers ``underscore_to_dot = False`` for any model name. With
that, the AST checker needs only the standard library.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import types
from functools import cache
from pathlib import Path
from typing import Any

from asynclm.errors import ExtraNotInstalled

PACKAGE = "bfcl_eval"
VERSION = "2026.3.23"
INSTALL_HINT = f'pip install --no-deps "bfcl-eval=={VERSION}" mpmath'


class BfclNotInstalled(ExtraNotInstalled):
    """The ``bfcl-eval`` package is missing."""


class _Cfg:
    underscore_to_dot = False


class _AnyModel(dict[str, Any]):
    def __missing__(self, key: Any) -> _Cfg:
        return _Cfg()


@cache
def _prepare() -> None:
    if "BFCL_PROJECT_ROOT" not in os.environ:
        os.environ["BFCL_PROJECT_ROOT"] = tempfile.mkdtemp(prefix="asynclm-bfcl-")
    name = f"{PACKAGE}.constants.model_config"
    if name not in sys.modules:
        stub = types.ModuleType(name)
        stub.MODEL_CONFIG_MAPPING = _AnyModel()  # type: ignore[attr-defined]
        sys.modules[name] = stub


def bfcl_import(module: str = "") -> types.ModuleType:
    """Import ``bfcl_eval`` (or ``bfcl_eval.<module>``) the offline way; raises
    :class:`BfclNotInstalled` with the install command when the package is missing."""
    _prepare()
    name = f"{PACKAGE}.{module}" if module else PACKAGE
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == PACKAGE or exc.name.startswith(PACKAGE + ".")):
            raise BfclNotInstalled(f"BFCL needs the bfcl-eval package: {INSTALL_HINT}") from exc
        raise


def available() -> bool:
    """Whether ``bfcl_eval`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(PACKAGE) is not None
    except (ImportError, ValueError):  # e.g. blocked with sys.modules["bfcl_eval"] = None
        return False


def data_dir() -> Path:
    """The package's ``data`` folder (BFCL items; ground truth under ``possible_answer``)."""
    spec = importlib.util.find_spec(PACKAGE) if available() else None
    if spec is None or not spec.submodule_search_locations:
        raise BfclNotInstalled(f"BFCL needs the bfcl-eval package: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"
