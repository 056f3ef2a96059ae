"""Scripted tasks for the simulator: calls with execution times, dependencies and estimates."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asynclm.protocol import Ref, format_call


@dataclass(frozen=True, slots=True)
class SimCall:
    """One call of a task. ``deps`` are ids whose results it needs; ``estimate_s`` is what the
    prompt tells the model (defaults to the true duration, as the paper's oracle assumes).
    ``args`` may hold :class:`~asynclm.protocol.Ref` values (``$id.path``): a model using
    futures writes them as references, one without copies the value from the result."""

    id: str
    fn: str
    args: Mapping[str, Any]
    duration_s: float
    deps: tuple[str, ...] = ()
    estimate_s: float | None = None
    result: Any = None

    @property
    def estimate(self) -> float:
        return self.duration_s if self.estimate_s is None else self.estimate_s

    @property
    def needs(self) -> tuple[str, ...]:
        """``deps`` plus the ids its arguments reference, in order, without repeats."""
        from asynclm.runtime.futures import find_refs

        return tuple(dict.fromkeys([*self.deps, *(r.id for r in find_refs(dict(self.args)))]))

    @property
    def value(self) -> Any:
        """What the simulated tool returns."""
        return self.result if self.result is not None else f"result of {self.id}"


@dataclass(frozen=True, slots=True)
class SimTask:
    calls: tuple[SimCall, ...]
    prompt: str = "Do the task."
    answer: str = "All done."
    name: str = "task"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def by_id(self) -> dict[str, SimCall]:
        return {c.id: c for c in self.calls}

    def literal_args(self, call: SimCall) -> dict[str, Any]:
        """``call.args`` with every reference replaced by the referenced call's result: what
        the tool receives, and what a model without futures writes."""
        from asynclm.runtime.futures import substitute

        return substitute(dict(call.args), {c.id: c.value for c in self.calls})


def _key(fn: str, args: Mapping[str, Any]) -> str:
    return fn + json.dumps(args, sort_keys=True, default=_no_ref)


def _no_ref(value: Any) -> str:
    if isinstance(value, Ref):
        raise TypeError(f"unresolved reference {value} in a simulated call")
    return str(value)


def task_toolbox(task: SimTask | list[SimTask]) -> Any:
    """Tools that sleep for each call's duration (``asyncio.sleep``: virtual or real time) and
    return its scripted result. Identical calls take their durations in emission order."""
    from asynclm.tools import Tool, Toolbox

    tasks = task if isinstance(task, list) else [task]
    plan: dict[str, deque[SimCall]] = defaultdict(deque)
    schemas: dict[str, dict[str, Any]] = {}
    for t in tasks:
        for c in t.calls:
            plan[_key(c.fn, t.literal_args(c))].append(c)
            props = schemas.setdefault(c.fn, {})
            for name in c.args:
                props.setdefault(name, {})

    async def handler(name: str, args: Mapping[str, Any]) -> Any:
        queue = plan.get(_key(name, args))
        if not queue:
            raise LookupError(f"no scripted call {format_call(name, dict(args))}")
        call = queue.popleft() if len(queue) > 1 else queue[0]
        await asyncio.sleep(call.duration_s)
        return call.value

    tools = [
        Tool.from_openai(
            {
                "name": fn,
                "description": f"Simulated tool {fn}.",
                "parameters": {"type": "object", "properties": props},
            },
            handler=handler,
        )
        for fn, props in schemas.items()
    ]
    return Toolbox(tools)
