""":class:`Toolbox`: an immutable, name-indexed set of tools."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from ._errors import UnknownToolError
from ._openai import function_spec
from ._tool import Handler, Tool

__all__ = ["Toolbox"]


class Toolbox(Mapping[str, Tool]):
    """Immutable mapping ``name -> Tool``. Plain callables are wrapped with ``tool``;
    duplicate names raise ``ValueError``."""

    __slots__ = ("_tools",)

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        if isinstance(tools, str | bytes | Mapping):
            raise TypeError("Toolbox() takes an iterable of tools or functions")
        collected: dict[str, Tool] = {}
        for item in tools:
            made = item if isinstance(item, Tool) else Tool.from_function(item)
            if made.name in collected:
                raise ValueError(f"duplicate tool name {made.name!r}")
            collected[made.name] = made
        self._tools: Mapping[str, Tool] = MappingProxyType(collected)

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"Toolbox({list(self._tools)})"

    def get_checked(self, name: str) -> Tool:
        """The tool called ``name``; raises :class:`UnknownToolError` naming the closest tools."""
        try:
            return self._tools[name]
        except (KeyError, TypeError):
            raise UnknownToolError(str(name), list(self._tools)) from None

    def with_tools(self, *tools: Tool | Callable[..., Any]) -> Toolbox:
        """A new toolbox with ``tools`` added (duplicate names raise ``ValueError``)."""
        return Toolbox([*self._tools.values(), *tools])

    def to_openai(self) -> list[dict[str, Any]]:
        """The OpenAI ``tools=[...]`` list."""
        return [t.to_openai() for t in self._tools.values()]

    def describe(self, estimated: bool = True) -> str:
        """A compact JSON list (one tool per line) for a system prompt: name, description,
        parameters and, if ``estimated`` and set, ``estimated_time_s``."""
        lines = []
        for t in self._tools.values():
            entry: dict[str, Any] = {
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            }
            if estimated and t.estimated_time is not None:
                entry["estimated_time_s"] = t.estimated_time
            lines.append(json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=repr))
        return "[\n" + ",\n".join(lines) + "\n]" if lines else "[]"

    @classmethod
    def from_openai(
        cls,
        specs: Iterable[Mapping[str, Any]],
        implementations: Mapping[str, Callable[..., Any]] | None = None,
        handler: Handler | None = None,
        **options: Any,
    ) -> Toolbox:
        """Tools from OpenAI specs; ``implementations[name]`` implements a tool, else
        ``handler(name, args)`` runs it. An implementation without a spec is a ``ValueError``.
        ``options`` (timeout, estimated_time, order_by) apply to every tool."""
        specs = list(specs)
        impls = dict(implementations or {})
        names = [str(function_spec(s).get("name")) for s in specs]
        orphans = sorted(set(impls) - set(names))
        if orphans:
            raise ValueError(f"implementations without a spec: {orphans}")
        return cls(
            Tool.from_openai(s, impls.get(n), handler=handler, **options)
            for s, n in zip(specs, names, strict=True)
        )

    @classmethod
    def from_module(cls, module: str | ModuleType) -> Toolbox:
        """The tools of a module (imported by name if a string): its ``TOOLS`` (a toolbox or an
        iterable of tools and functions), else every :class:`Tool` it defines, in order."""
        mod = importlib.import_module(module) if isinstance(module, str) else module
        found = getattr(mod, "TOOLS", None)
        if found is None:
            found = [v for v in vars(mod).values() if isinstance(v, Tool)]
        return found if isinstance(found, Toolbox) else cls(found)
