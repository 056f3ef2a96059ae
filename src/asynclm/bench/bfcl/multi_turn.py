"""BFCL multi-turn items on BFCL's real, stateful tools, and their check by BFCL's own checker.

- :func:`make_instances` creates one instance per involved class exactly as BFCL does
  (``class_()``, then ``_load_scenario(deepcopy(initial_config[cls]), long_context=...)``
  except for stateless classes), so state and seeded random ids match BFCL's.
- :class:`Backend` turns an item (a plain one, or several joined ones: :func:`data.parts`) into
  asynclm tools whose handler sleeps the call's seeded duration, then calls the instance's method
  directly (no ``eval``). It logs every method call in the order the calls *took effect*.
  With ``ordered=True`` every tool of one instance shares ``order_by=Ordered((prefix, class))``,
  so calls on one instance keep emission order while calls on different ones overlap.
- :func:`check_part` gives BFCL's ``multi_turn_checker`` the calls as they took effect (one step
  per turn); it re-executes them on fresh instances and compares state and responses with the
  ground truth's. BFCL caches instances in a module global under the model name, so each check
  uses a fresh name and removes its instances afterwards.
- :meth:`Backend.state_matches` compares the *live* instances (the ones the runtime really
  mutated) with the ground truth's after each turn, with BFCL's ``state_checker``.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import inspect
import itertools
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from asynclm.bench.bfcl._pkg import bfcl_import
from asynclm.bench.bfcl.data import BfclItem, Part, parts
from asynclm.bench.bfcl.timing import CallTimer, call_duration
from asynclm.bench.bfcl.tools import toolbox_from_bfcl
from asynclm.protocol import format_call
from asynclm.tools import Ordered, Tool, Toolbox
from asynclm.tools._from_schema import model_from_schema
from asynclm.tools._validation import ArgumentValidator

__all__ = [
    "Backend", "GtCall", "check_part", "make_instances", "method_owner", "parse_call",
    "turn_calls",
]

MODEL_NAME = "asynclm"
_names = itertools.count()


@cache
def _config() -> tuple[dict[str, str], frozenset[str]]:
    cfg = bfcl_import("constants.executable_backend_config")
    return dict(cfg.CLASS_FILE_PATH_MAPPING), frozenset(cfg.STATELESS_CLASSES)


def long_context(item: BfclItem) -> bool:
    """BFCL's rule (from the test id): long-context scenarios load extra state."""
    cat = item.id.rsplit("_", 1)[0]
    return "long_context" in cat or "composite" in cat


def make_instances(item: BfclItem) -> dict[str, Any]:
    """Fresh instances of the item's ``involved_classes``, initialised as BFCL does."""
    import importlib

    modules, stateless = _config()
    out: dict[str, Any] = {}
    config = item.extra.get("initial_config") or {}
    for cls in item.extra["involved_classes"]:
        obj = getattr(importlib.import_module(modules[cls]), cls)()
        if cls not in stateless:
            obj._load_scenario(copy.deepcopy(config.get(cls, {})), long_context=long_context(item))
        out[cls] = obj
    return out


def method_owner(item: BfclItem, instances: Mapping[str, Any]) -> dict[str, str]:
    """Method name → class, for the item's function documents. As in BFCL, a method name found
    in several classes belongs to the last involved class that has it."""
    docs = {str(f["name"]) for f in item.functions}
    owner: dict[str, str] = {}
    for cls in item.extra["involved_classes"]:
        for name, _ in inspect.getmembers(instances[cls], predicate=inspect.ismethod):
            if not name.startswith("_") and name in docs:
                owner[name] = cls
    return owner


def parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """A ground-truth call string ``fn(1, a='x')`` as ``(fn, positional, keywords)``; literals
    only (``ast.literal_eval``), never evaluated."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call):
        raise ValueError(f"not a call: {text!r}")
    return (ast.unparse(node.func), [ast.literal_eval(a) for a in node.args],
            {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg})


@dataclass(frozen=True, slots=True)
class GtCall:
    """One ground-truth call of a turn: part index, class, method, keyword arguments (positional
    ones bound by the method's signature), and the name the joined item's tool has."""

    part: int
    cls: str
    method: str
    args: Mapping[str, Any]
    tool: str


def _bind(method: Callable[..., Any], pos: Sequence[Any], kw: Mapping[str, Any]) -> dict[str, Any]:
    if not pos:
        return dict(kw)
    return dict(inspect.signature(method).bind_partial(*pos, **kw).arguments)


def turn_calls(item: BfclItem, turn: int, instances: Sequence[Mapping[str, Any]],
               owners: Sequence[Mapping[str, str]] | None = None) -> list[GtCall]:
    """The ground-truth calls of ``turn`` over every part of ``item`` (part order, then call
    order). ``instances``: one mapping class → instance per part (used for owners/signatures);
    ``owners``: their :func:`method_owner` maps, if already known."""
    out = []
    for i, p in enumerate(parts(item)):
        gt = p.item.ground_truth
        if turn >= len(gt):
            continue
        owner = owners[i] if owners is not None else method_owner(p.item, instances[i])
        for text in gt[turn]:
            fn, pos, kw = parse_call(text)
            cls = owner[fn]
            args = _bind(getattr(instances[i][cls], fn), pos, kw)
            out.append(GtCall(i, cls, fn, args, p.prefix + fn))
    return out


_SCHEMA_TOOLS: dict[tuple[str, int], tuple[Mapping[str, Any], Tool, ArgumentValidator]] = {}


def _schema_tool(name: str, doc: Mapping[str, Any]) -> tuple[Tool, ArgumentValidator]:
    """The documented tool (what the model is shown) and its names-only validator; cached per
    document object (the loader shares them), as the same class documents come back in every
    item and turn. The cache keeps the document alive, so its id is never reused."""
    hit = _SCHEMA_TOOLS.get((name, id(doc)))
    if hit is None or hit[0] is not doc:
        (shown,) = toolbox_from_bfcl([{**dict(doc), "name": name}]).values()
        hit = _SCHEMA_TOOLS[(name, id(doc))] = (doc, shown, _untyped(shown.parameters))
    return hit[1], hit[2]


def _untyped(schema: Mapping[str, Any]) -> ArgumentValidator:
    """A validator for parameter names only (unknown and missing required ones), not types.

    BFCL runs its classes' methods on whatever the call holds; its documents are sometimes
    wrong (``multi_turn_base_173`` passes the existing ticket id ``'ticket_001'`` to an
    ``integer`` parameter). Checking types would reject calls BFCL runs and scores as correct;
    the model is still shown the documented schema."""
    props: dict[str, dict[str, Any]] = {k: {} for k in schema.get("properties", {})}
    loose = {"type": "object", "properties": props, "required": list(schema.get("required", [])),
             "additionalProperties": False}
    return ArgumentValidator(model_from_schema(loose), tuple(props), fill_defaults=False)


def _missed(p: Part, turn: int) -> set[str]:
    """Functions BFCL withholds until a later turn (``multi_turn_miss_func``)."""
    missed = p.item.extra.get("missed_function") or {}
    return {fn for k, fns in missed.items() if int(k) > turn for fn in fns}


@dataclass
class Effect:
    """A method call as it took effect on a live instance."""

    part: int
    turn: int
    method: str
    args: dict[str, Any]


@dataclass
class Backend:
    """Live BFCL instances for one run of one item, and the tools over them.

    ``log`` holds every method call in the order it took effect (appended just before the method
    runs, after the call's sleep). ``turn`` is the current turn (set by the runner)."""

    item: BfclItem
    timer: CallTimer
    ordered: bool = True
    turn: int = 0
    log: list[Effect] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parts = parts(self.item)
        self.live = [make_instances(p.item) for p in self.parts]
        self.gt = [make_instances(p.item) for p in self.parts]
        self.owner = [method_owner(p.item, inst) for p, inst in zip(self.parts, self.live,
                                                                      strict=True)]
        self.route: dict[str, tuple[int, str, str]] = {
            p.prefix + m: (i, cls, m) for i, p in enumerate(self.parts)
            for m, cls in self.owner[i].items()
        }

    def order_key(self, tool: str) -> Hashable | None:
        i, cls, _ = self.route[tool]
        return (self.parts[i].prefix, cls)

    async def _handler(self, name: str, args: dict[str, Any]) -> Any:
        i, cls, method = self.route[name]
        await asyncio.sleep(self.timer.next(name, args))
        # a copy: methods keep (and mutate) the lists they get
        self.log.append(Effect(i, self.turn, method, copy.deepcopy(dict(args))))
        return getattr(self.live[i][cls], method)(**args)

    def tools(self, turn: int, estimates: Mapping[str, float] | None = None) -> Toolbox:
        """The tools available in ``turn`` (withheld functions left out)."""
        out = []
        for i, p in enumerate(self.parts):
            hidden = _missed(p, turn)
            for doc in p.item.functions:
                m = str(doc["name"])
                if m in hidden or m not in self.owner[i]:
                    continue
                name = p.prefix + m
                opts: dict[str, Any] = {}
                if self.ordered:
                    opts["order_by"] = Ordered(self.order_key(name))
                if estimates and name in estimates:
                    opts["estimated_time"] = estimates[name]
                shown, validator = _schema_tool(name, doc)
                out.append(Tool(name=name, description=shown.description,
                                parameters=shown.parameters, validator=validator,
                                handler=self._handler, **opts))
        return Toolbox(out)

    def gt_calls(self, turn: int) -> list[GtCall]:
        return turn_calls(self.item, turn, self.gt, self.owner)

    def advance_truth(self, turn: int) -> None:
        """Run ``turn``'s ground-truth calls, in order, on the ground-truth instances."""
        for c in self.gt_calls(turn):
            try:
                getattr(self.gt[c.part][c.cls], c.method)(**c.args)
            except Exception:  # noqa: BLE001, S110 - BFCL records an error string; state is what counts
                pass

    def state_matches(self) -> tuple[bool, str | None]:
        """BFCL's ``state_checker`` between the live and the ground-truth instances."""
        checker = bfcl_import("eval_checker.multi_turn_eval.multi_turn_checker").state_checker
        for i, p in enumerate(self.parts):
            res = checker(self.live[i], self.gt[i])
            if not res["valid"]:
                diff = res.get("details", {}).get("differences")
                return False, f"{p.item.id}: {res['error_message']} {diff}"[:500]
        return True, None

    def effects(self, part: int, n_turns: int) -> list[list[list[str]]]:
        """Part ``part``'s calls as BFCL's checker takes them: per turn, one step with the calls
        in the order they took effect (no step when the turn made no call)."""
        out: list[list[list[str]]] = [[] for _ in range(n_turns)]
        for e in self.log:
            if e.part == part and e.turn < n_turns:
                if not out[e.turn]:
                    out[e.turn].append([])
                out[e.turn][0].append(_call_text(e.method, e.args))
        return out

    def check(self) -> tuple[bool, str | None]:
        """Every part through BFCL's ``multi_turn_checker`` (all must pass)."""
        for i, p in enumerate(self.parts):
            valid, error = check_part(p.item, self.effects(i, len(p.item.ground_truth)))
            if not valid:
                return False, f"{p.item.id}: {error}" if len(self.parts) > 1 else error
        return True, None


def _call_text(method: str, args: Mapping[str, Any]) -> str:
    try:
        return format_call(method, dict(args))
    except ValueError:
        return f"{method}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"


def check_part(item: BfclItem, decoded: list[list[list[str]]]) -> tuple[bool, str | None]:
    """BFCL's ``multi_turn_checker`` on one BFCL sample; ``decoded`` is per turn, per step, the
    call strings. Returns ``(valid, error)``."""
    mod = bfcl_import("eval_checker.multi_turn_eval.multi_turn_checker")
    utils = bfcl_import("eval_checker.multi_turn_eval.multi_turn_utils")
    name = f"{MODEL_NAME}_{next(_names)}"
    entry = {"id": item.id, "initial_config": item.extra.get("initial_config") or {},
             "involved_classes": list(item.extra["involved_classes"])}
    try:
        res = mod.multi_turn_checker(decoded, [list(t) for t in item.ground_truth], entry,
                                     item.category, name)
    except Exception as exc:  # noqa: BLE001 - odd input the checker cannot digest: not valid
        res = {"valid": False, "error_message": f"checker raised {type(exc).__name__}: {exc}"}
    finally:
        prefix = re.sub(r"[-./:]", "_", name) + "_"
        for key in [k for k in vars(utils) if k.startswith(prefix)]:
            del vars(utils)[key]  # BFCL's instance cache: never reused, never leaked
    if res.get("valid"):
        return True, None
    return False, f"{res.get('error_type', 'invalid')}: {res.get('error_message', '')}"[:500]


def estimates(item: BfclItem, seed: int, profile: str) -> dict[str, float]:
    """The ``estimated_time_s`` shown for each tool: the duration of its first ground-truth call
    (else a draw for the function alone), to 10 ms."""
    out: dict[str, float] = {}
    for turn in item.ground_truth:
        for text in turn:
            try:
                fn, _, kw = parse_call(text)
            except (SyntaxError, ValueError):
                continue
            out.setdefault(fn, round(call_duration(seed, item.id, fn, kw, 0, profile), 2))
    for f in item.functions:
        fn = str(f["name"])
        out.setdefault(fn, round(call_duration(seed, item.id, fn, {}, 0, profile), 2))
    return out
