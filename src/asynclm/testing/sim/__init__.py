"""The simulator: a scripted model on a virtual clock, for exact tests and benchmarks."""

from asynclm.testing.sim._engine import SimCosts, SimEngine
from asynclm.testing.sim._policy import CompilerPolicy, OraclePolicy, Policy, ScriptedPolicy
from asynclm.testing.sim._task import SimCall, SimTask, task_toolbox
from asynclm.testing.sim._tokenizer import EOS, SimTokenizer

__all__ = [
    "EOS", "CompilerPolicy", "OraclePolicy", "Policy", "ScriptedPolicy", "SimCall", "SimCosts",
    "SimEngine",
    "SimTask", "SimTokenizer", "task_toolbox",
]
