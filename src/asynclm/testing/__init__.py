"""Test doubles, in one place: the simulator (an engine on virtual time, driven by a scripted or
oracle policy), engines that time the runtime alone, and a fake inference server for
:class:`~asynclm.engines.openai_http.HttpEngine` (:mod:`asynclm.testing.http`, an
``httpx.MockTransport``; needs ``httpx``, imported on first use).

>>> from asynclm.testing import ScriptedPolicy, SimCosts, SimEngine
>>> engine = SimEngine(ScriptedPolicy(["[CALL] c1 [HEAD] add(a=1, b=2) [END]", "Done."]),
...                    SimCosts(tpot_s=0.01))
"""

import importlib
from typing import Any

from asynclm.testing.engines import InstantEngine
from asynclm.testing.sim import (
    EOS,
    CompilerPolicy,
    OraclePolicy,
    Policy,
    ScriptedPolicy,
    SimCall,
    SimCosts,
    SimEngine,
    SimTask,
    SimTokenizer,
    task_toolbox,
)

_LAZY = {"FakeServer": "asynclm.testing.http", "ByteTokenizer": "asynclm.testing.http"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asynclm.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "EOS", "ByteTokenizer", "CompilerPolicy", "FakeServer", "InstantEngine", "OraclePolicy",
    "Policy", "ScriptedPolicy", "SimCall", "SimCosts", "SimEngine", "SimTask", "SimTokenizer",
    "task_toolbox",
]
