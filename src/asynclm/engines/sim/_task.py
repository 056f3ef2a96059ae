"""Scripted tasks for the simulator: calls with execution times, dependencies and estimates."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asynclm.protocol import format_call


@dataclass(frozen=True, slots=True)
class SimCall:
    """One call of a task. ``deps`` are ids whose results it needs; ``estimate_s`` is what the
    prompt tells the model (defaults to the true duration, as the paper's oracle assumes)."""

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


@dataclass(frozen=True, slots=True)
class SimTask:
    calls: tuple[SimCall, ...]
    prompt: str = "Do the task."
    answer: str = "All done."
    name: str = "task"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def by_id(self) -> dict[str, SimCall]:
        return {c.id: c for c in self.calls}


def _key(fn: str, args: Mapping[str, Any]) -> str:
    return fn + json.dumps(args, sort_keys=True, default=str)


def task_toolbox(task: SimTask | list[SimTask]) -> Any:
    """Tools that sleep for each call's duration (``asyncio.sleep``: virtual or real time) and
    return its scripted result. Identical calls take their durations in emission order."""
    from asynclm.tools import Tool, Toolbox

    tasks = task if isinstance(task, list) else [task]
    plan: dict[str, deque[SimCall]] = defaultdict(deque)
    schemas: dict[str, dict[str, Any]] = {}
    for t in tasks:
        for c in t.calls:
            plan[_key(c.fn, c.args)].append(c)
            props = schemas.setdefault(c.fn, {})
            for name, value in c.args.items():
                props.setdefault(name, {})

    async def handler(name: str, args: Mapping[str, Any]) -> Any:
        queue = plan.get(_key(name, args))
        if not queue:
            raise LookupError(f"no scripted call {format_call(name, dict(args))}")
        call = queue.popleft() if len(queue) > 1 else queue[0]
        await asyncio.sleep(call.duration_s)
        return call.result if call.result is not None else f"result of {call.id}"

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
