"""Test doubles, in one place: the simulator (an engine on virtual time, driven by a scripted or
oracle policy) and engines that time the runtime alone.

>>> from asynclm.testing import ScriptedPolicy, SimCosts, SimEngine
>>> engine = SimEngine(ScriptedPolicy(["[CALL] c1 [HEAD] add(a=1, b=2) [END]", "Done."]),
...                    SimCosts(tpot_s=0.01))
"""

from asynclm.testing.engines import InstantEngine
from asynclm.testing.sim import (
    EOS, CompilerPolicy, OraclePolicy, Policy, ScriptedPolicy, SimCall, SimCosts, SimEngine,
    SimTask, SimTokenizer, task_toolbox,
)

__all__ = [
    "EOS", "CompilerPolicy", "InstantEngine", "OraclePolicy", "Policy", "ScriptedPolicy",
    "SimCall", "SimCosts", "SimEngine", "SimTask", "SimTokenizer", "task_toolbox",
]
