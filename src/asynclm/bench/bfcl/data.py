"""BFCL items and their ground truth, read from the installed ``bfcl-eval`` package.

The data files are JSON Lines despite their ``.json`` name: ``data/BFCL_v4_<category>.json`` holds
the items, ``data/possible_answer/BFCL_v4_<category>.json`` the ground truth (absent for the
relevance categories). Multi-turn items carry no ``function`` list: their tools are the documents
of their ``involved_classes`` in ``data/multi_turn_func_doc/`` (minus ``excluded_function``).
``multi-step-parallel`` is not a BFCL file: it is built from ``multi_turn_base`` (the paper's
"multi-step parallel" set, :func:`join_items`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from asynclm.bench.bfcl._pkg import data_dir

__all__ = [
    "MULTI_STEP_PARALLEL", "MULTI_TURN_CATEGORIES", "RUNNABLE_CATEGORIES", "BfclItem", "Part",
    "categories", "first_acceptable", "ground_truth_calls", "join_items", "load",
    "multi_turn_docs", "parts",
]

VERSION_PREFIX = "BFCL_v4"

RUNNABLE_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
    "live_irrelevance", "live_relevance",
)
"""Single-turn Python categories the runner and checker support."""

MULTI_TURN_CATEGORIES = (
    "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context",
)
"""BFCL's multi-turn categories: items, class tools and per-turn ground truth (call strings)."""

MULTI_STEP_PARALLEL = "multi-step-parallel"
"""The paper's constructed set (not shipped by BFCL): each item runs three ``multi_turn_base``
samples together (see :func:`join_items`)."""

JOIN_STRIDE = 67
"""Item ``k`` of ``multi-step-parallel`` joins base samples ``k``, ``k+67`` and ``k+134`` (mod
200): every sample is used exactly three times, and the three are never neighbours (neighbouring
samples often share their scenario)."""

_MULTI_TURN_DOCS = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}


@dataclass(frozen=True, slots=True)
class BfclItem:
    """One BFCL test item.

    ``turns``: the messages of each turn (single-turn items have one). ``functions``: the BFCL
    function documents, unchanged (BFCL types; the checker needs them as they are).
    ``ground_truth``: single-turn, one ``{fn: {param: [acceptable values…]}}`` per expected call
    (``""`` among the values: may be omitted); multi-turn, a list of call strings per turn.
    ``extra``: every other field of the item (``initial_config``, ``involved_classes``, …).
    """

    id: str
    category: str
    turns: tuple[tuple[Mapping[str, str], ...], ...]
    functions: tuple[Mapping[str, Any], ...]
    ground_truth: tuple[Any, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def multi_turn(self) -> bool:
        return self.category.startswith("multi_turn") or self.category == MULTI_STEP_PARALLEL

    @property
    def question(self) -> str:
        """The last user message of the first turn."""
        users = [m["content"] for m in self.turns[0] if m.get("role") == "user"] if self.turns else []
        return users[-1] if users else ""

    def function_docs(self) -> list[dict[str, Any]]:
        """A deep copy of the function documents (safe to modify)."""
        return copy.deepcopy([dict(f) for f in self.functions])


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def categories() -> list[str]:
    """Every category the installed package ships (from its file names), plus
    :data:`MULTI_STEP_PARALLEL`."""
    prefix = VERSION_PREFIX + "_"
    shipped = [p.stem[len(prefix):] for p in data_dir().glob(f"{prefix}*.json")]
    return sorted([*shipped, MULTI_STEP_PARALLEL])


@cache
def multi_turn_docs(cls: str) -> tuple[dict[str, Any], ...]:
    """The function documents of BFCL's multi-turn class ``cls`` (e.g. ``GorillaFileSystem``),
    as shipped with bfcl-eval (read once)."""
    return tuple(_jsonl(data_dir() / "multi_turn_func_doc" / _MULTI_TURN_DOCS[cls]))


def load(category: str, *, limit: int | None = None, offset: int = 0) -> list[BfclItem]:
    """Items ``offset … offset+limit-1`` of ``category``, in the file's order."""
    if category == MULTI_STEP_PARALLEL:
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("offset and limit must be >= 0")
        base = load("multi_turn_base")
        n = len(base)
        stop = n if limit is None else min(n, offset + limit)
        return [join_items(
            [base[k], base[(k + JOIN_STRIDE) % n], base[(k + 2 * JOIN_STRIDE) % n]],
            id=f"multi_step_parallel_{k}") for k in range(offset, stop)]
    data = data_dir()
    path = data / f"{VERSION_PREFIX}_{category}.json"
    if not path.is_file():
        raise ValueError(
            f"unknown BFCL category {category!r}; the package ships: {', '.join(categories())}"
        )
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError("offset and limit must be >= 0")
    rows = _jsonl(path)
    rows = rows[offset:] if limit is None else rows[offset:offset + limit]
    answer_path = data / "possible_answer" / path.name
    answers = {a["id"]: a["ground_truth"] for a in _jsonl(answer_path)} if answer_path.is_file() else {}
    items = []
    for row in rows:
        functions = row.get("function")
        if functions is None and "involved_classes" in row:
            excluded = set(row.get("excluded_function") or ())
            functions = [
                d for cls in row["involved_classes"] if cls in _MULTI_TURN_DOCS
                for d in multi_turn_docs(cls) if d["name"] not in excluded
            ]
        extra = {k: v for k, v in row.items() if k not in ("id", "question", "function")}
        items.append(BfclItem(
            id=row["id"],
            category=category,
            turns=tuple(tuple(turn) for turn in row["question"]),
            functions=tuple(functions or ()),
            ground_truth=tuple(answers.get(row["id"], ())),
            extra=extra,
        ))
    return items


# -- ground truth as concrete calls ---------------------------------------------------------------

_OMIT = object()


def _pick(options: Any) -> Any:
    if not isinstance(options, list):
        return _concrete(options)
    values = [o for o in options if o != ""]
    if not values or (values[0] is None and "" in options):
        return _OMIT
    return _concrete(values[0])


def _concrete(value: Any) -> Any:
    if isinstance(value, dict):  # nested dicts list acceptable values per key too
        return {k: p for k, o in value.items() if (p := _pick(o)) is not _OMIT}
    if isinstance(value, list):
        return [_concrete(v) for v in value]
    return value


def first_acceptable(params: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Concrete arguments from one ground-truth call: the first acceptable value of each
    parameter; parameters that may be omitted (``""`` accepted) and have no other value, or
    whose first value is ``None``, are left out."""
    return {k: p for k, o in params.items() if (p := _pick(o)) is not _OMIT}


def ground_truth_calls(item: BfclItem) -> list[tuple[str, dict[str, Any]]]:
    """The expected calls of a single-turn item as ``(fn, args)``, in ground-truth order."""
    if item.multi_turn:
        raise ValueError("multi-turn ground truth is a list of call strings per turn")
    return [(fn, first_acceptable(params)) for call in item.ground_truth
            for fn, params in call.items()]


# -- multi-turn items joined into one (the paper's multi-step parallel set) ------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """One BFCL multi-turn sample inside a (possibly joined) item; its tools are named
    ``prefix + name`` in the joined item (``""`` for a plain item)."""

    prefix: str
    item: BfclItem


def parts(item: BfclItem) -> list[Part]:
    """The BFCL samples an item is made of: itself, or the samples a joined item runs together."""
    joined = item.extra.get("parts")
    return list(joined) if joined else [Part("", item)]


def _prefix_call(text: str, prefix: str) -> str:
    """``cd(folder='x')`` → ``t1.cd(folder='x')`` (ground-truth calls are one call each)."""
    return prefix + text.lstrip()


def join_items(samples: Sequence[BfclItem], *, id: str) -> BfclItem:
    """Run several multi-turn samples together (the paper's "multi-step parallel"): sample ``i``
    gets the tool prefix ``t<i>.``; turn ``k`` asks for every sample's turn ``k`` in one user
    message (samples with fewer turns drop out); turn ``k``'s ground truth is every sample's,
    prefixed. Each sample keeps its own tool instances and is checked on its own."""
    if len(samples) < 2 or any(not s.category.startswith("multi_turn") for s in samples):
        raise ValueError("join_items needs two or more multi-turn items")
    ps = [Part(f"t{i + 1}.", s) for i, s in enumerate(samples)]
    n_turns = max(len(s.turns) for s in samples)
    turns: list[tuple[Mapping[str, str], ...]] = []
    truth: list[list[str]] = []
    for k in range(n_turns):
        asks = []
        calls: list[str] = []
        for p in ps:
            if k < len(p.item.turns):
                text = "\n".join(m["content"] for m in p.item.turns[k] if m.get("role") == "user")
                if text:
                    asks.append(f"Task {p.prefix[:-1]} (use the {p.prefix}* functions): {text}")
            if k < len(p.item.ground_truth):
                calls += [_prefix_call(c, p.prefix) for c in p.item.ground_truth[k]]
        content = (f"Do these {len(ps)} independent tasks.\n" + "\n".join(asks)) if asks else ""
        turns.append(({"role": "user", "content": content},) if content else ())
        truth.append(calls)
    functions = tuple({**dict(f), "name": p.prefix + str(f["name"])}
                      for p in ps for f in p.item.functions)
    return BfclItem(id=id, category=MULTI_STEP_PARALLEL, turns=tuple(turns), functions=functions,
                    ground_truth=tuple(truth),
                    extra={"parts": tuple(ps), "joins": [s.id for s in samples]})
