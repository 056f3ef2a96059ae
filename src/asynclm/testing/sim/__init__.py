"""The simulator: a scripted model on a virtual clock, for exact tests and benchmarks.

Policies (what the simulated model writes) speak any dialect: :class:`OraclePolicy` (the ideal
model of a :class:`SimTask`) and :class:`CallScript` (a script of prose, calls and waits) write
calls through a :class:`CallLedger`, which resolves every injected result to the call it
answers (by id where the dialect has ids, else by the echoed call, else by order)."""

from asynclm.testing.sim._correlate import CallLedger, Observation, ObservationKind
from asynclm.testing.sim._engine import SimCosts, SimEngine
from asynclm.testing.sim._policy import (
    CompilerPolicy,
    ObservesInterrupts,
    OraclePolicy,
    Policy,
    ScriptedPolicy,
)
from asynclm.testing.sim._script import CallScript, ScriptCall, ScriptStep, TrapOnce, WaitFor
from asynclm.testing.sim._task import SimCall, SimTask, task_toolbox
from asynclm.testing.sim._tokenizer import EOS, SimTokenizer

__all__ = [
    "EOS", "CallLedger", "CallScript", "CompilerPolicy", "Observation", "ObservationKind",
    "ObservesInterrupts", "OraclePolicy", "Policy", "ScriptCall", "ScriptStep", "ScriptedPolicy",
    "SimCall", "SimCosts", "SimEngine", "SimTask", "SimTokenizer", "TrapOnce", "WaitFor",
    "task_toolbox",
]
