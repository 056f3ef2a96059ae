"""The simulator: a scripted model on a virtual clock, for exact tests and benchmarks."""

from asynclm.engines.sim._engine import SimCosts, SimEngine
from asynclm.engines.sim._policy import CompilerPolicy, OraclePolicy, Policy, ScriptedPolicy
from asynclm.engines.sim._task import SimCall, SimTask, task_toolbox
from asynclm.engines.sim._tokenizer import EOS, SimTokenizer

__all__ = [
    "EOS", "CompilerPolicy", "OraclePolicy", "Policy", "ScriptedPolicy", "SimCall", "SimCosts",
    "SimEngine",
    "SimTask", "SimTokenizer", "task_toolbox",
]
