"""The multi-step-parallel set as DAG-benchmark tasks (``asynclm bench dag --multi-step-parallel``).

The set is the paper's: three BFCL ``multi_turn_base`` samples run together, built by
:func:`asynclm.bench.bfcl.data.load` (item ``k`` joins samples ``k``, ``k+67``, ``k+134``; tools
prefixed ``t1.``, ``t2.``, ``t3.``). An item becomes one :class:`SimTask` per turn; the turns run
as separate sessions, one after another, and the item's figures are the sums over its turns
(as ``bench bfcl`` and ``bench reproduce`` sum them). A turn's calls are its ground truth as
:class:`~asynclm.bench.bfcl.multi_turn.Backend` gives it (every sample's calls, positional
arguments bound), with the times ``bench bfcl`` draws for them (:class:`CallTimer`, profile
``paper``: 30 ms + Exp(80 ms) capped at 500 ms, seeded by seed, item, call): the same times the
BFCL runs see.

Dependencies (BFCL gives no graph; stateful tools must keep their order): within a turn each
call depends on the previous call with the same key, calls with different keys are independent.
``chain_by="sample"`` (the default): the key is the sample (``t<i>.``), so calls of one sample
form one chain; this also keeps the data flow between a sample's classes (``cat`` then ``mean``
of what it printed, ``get_stock_info`` then a tweet quoting the price). ``chain_by="instance"``:
the key is the BFCL class instance (sample, class), the order ``bench bfcl``/``bench reproduce``
keep (their ``Ordered`` keys and multi-step model); it treats those cross-class pairs as
independent.

Calls keep their literal arguments (no ``$ref``): the order is kept by the executor, every tool
declaring ``Ordered(key)`` (``SimTask.meta["order"]``: tool name → key). So a strategy with
futures writes a dependent call right after its predecessor was *written* (asynclm's
write-ahead, ``async-write-ahead`` in ``bench reproduce``) and it starts when the predecessor
ended; one without writes it once the predecessor's result is in (the paper's multi-step model).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Literal

from asynclm.bench.bfcl.config import SIM_ANSWER
from asynclm.bench.bfcl.data import MULTI_STEP_PARALLEL, BfclItem, load
from asynclm.bench.bfcl.multi_turn import Backend
from asynclm.bench.bfcl.timing import CallTimer
from asynclm.testing.sim import SimCall, SimTask

__all__ = [
    "CHAIN_BY", "MULTI_STEP_PARALLEL", "ChainBy", "item_tasks", "make_msp_tasks", "report_intro",
    "report_notes",
]

ChainBy = Literal["sample", "instance"]
CHAIN_BY: tuple[ChainBy, ...] = ("sample", "instance")


def item_tasks(item: BfclItem, seed: int, chain_by: ChainBy = "sample") -> tuple[SimTask, ...]:
    """One :class:`SimTask` per turn of a multi-turn BFCL ``item`` (a joined one or a plain
    sample); calls ``c1, c2, …`` in ground-truth order (sample, then call order), each with
    ``deps`` = the previous call with the same key (see the module docstring), and
    ``meta["order"]`` mapping each tool name used to its key. Deterministic for ``seed``."""
    if chain_by not in CHAIN_BY:
        raise ValueError(f"chain_by must be one of {CHAIN_BY}, not {chain_by!r}")
    timer = CallTimer(seed, item.id, "paper")  # one per item: repeated calls get the next draw
    backend = Backend(item, CallTimer(seed, item.id, "paper"))
    tasks = []
    for turn in range(len(item.turns)):
        tools = backend.tools(turn)
        calls: list[SimCall] = []
        last: dict[Hashable, str] = {}
        order: dict[str, Hashable] = {}
        for j, c in enumerate(backend.gt_calls(turn)):
            try:
                vargs = tools[c.tool].validate(c.args)  # the handler's key, as in bench bfcl
            except Exception:  # noqa: BLE001 - the call fails in the run too
                vargs = dict(c.args)
            key = (backend.parts[c.part].prefix if chain_by == "sample"
                   else backend.order_key(c.tool))
            cid = f"c{j + 1}"
            deps = (last[key],) if key in last else ()
            last[key] = cid
            order[c.tool] = key
            calls.append(SimCall(cid, c.tool, dict(c.args), timer.next(c.tool, vargs), deps))
        tasks.append(SimTask(
            tuple(calls), prompt=f"{item.id}, turn {turn + 1}.", answer=SIM_ANSWER,
            name=f"{item.id}/{turn + 1}",
            meta={"shape": MULTI_STEP_PARALLEL, "item": item.id, "turn": turn, "order": order}))
    return tuple(tasks)


def make_msp_tasks(n_items: int, seed: int, chain_by: ChainBy = "sample", *,
                   offset: int = 0) -> list[tuple[SimTask, ...]]:
    """Items ``offset … offset+n_items-1`` of the multi-step-parallel set, each as its turns'
    tasks (:func:`item_tasks`). Needs the ``bfcl-eval`` package."""
    return [item_tasks(it, seed, chain_by)
            for it in load(MULTI_STEP_PARALLEL, limit=n_items, offset=offset)]


def report_intro(params: Mapping[str, Any]) -> str:
    """The report's paragraph on the set (``params``: the result's ``multi_step_parallel``)."""
    chain = ("the calls of one sample (`t<i>.` prefix) form a chain in ground-truth order "
             "(stateful tools; it also keeps the data passed between a sample's classes), "
             "calls of different samples are independent"
             if params["chain_by"] == "sample" else
             "the calls on one BFCL class instance (sample, class) form a chain in "
             "ground-truth order, as `bench bfcl` orders them; other calls are independent")
    return (
        "multi-step-parallel: the paper's set, BFCL `multi_turn_base` samples k, k+67, k+134 "
        f"run together (items 0-{params['items'] - 1}), the ground-truth calls of each turn "
        f"(cheat sheet), times drawn as `bench bfcl` draws them (same law). Dependencies: {chain}."
        " Calls carry literal arguments and the executor keeps each chain's order (`Ordered`): "
        "with futures a call is written right after its predecessor was written (write-ahead), "
        "without them once the predecessor's result is in (the paper's multi-step model). One "
        "row per item: its turns run as separate sessions, one after another, each paying its "
        "TTFT and answer; every figure is the sum over the turns (efficiency = Σ bound ÷ Σ "
        "measured).")


def report_notes(params: Mapping[str, Any], brute_force_max: int) -> list[str]:
    """The report's notes on the set."""
    return [
        "- multi-step-parallel: an item has an optimum when each of its turns has at most "
        f"{brute_force_max} calls. Its calls carry no references, so G is the same with and "
        "without futures; futures change when a chained call is written (before its "
        "predecessor's result, not after). llmcompiler plans every call at once and its "
        "executor keeps each chain's order (a real LLMCompiler plan has no dependency without "
        "a `$n` reference: it would run a chain's stateful calls at once).",
        "- `bench bfcl` / `bench reproduce` key the order by class instance (sample, class) and "
        "leave each turn's opening request out of the latency; here "
        + ("the chain is the whole sample (cross-class data flow kept) and "
           if params["chain_by"] == "sample" else "")
        + "each turn's TTFT is in.",
    ]
