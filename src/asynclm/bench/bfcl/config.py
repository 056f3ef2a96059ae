"""The BFCL benchmark's configuration, and the session one run uses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from asynclm.bench.baselines import strategy as get_strategy
from asynclm.bench.bfcl.bfcl_prompt import BFCL_PROMPT
from asynclm.bench.bfcl.data import (
    MULTI_STEP_PARALLEL,
    MULTI_TURN_CATEGORIES,
    RUNNABLE_CATEGORIES,
    BfclItem,
    parts,
)
from asynclm.bench.bfcl.timing import get_profile
from asynclm.engines.base import Engine
from asynclm.protocol import Dialect
from asynclm.protocol.registry import DIALECTS
from asynclm.runtime import Session, SessionConfig
from asynclm.runtime.session import resolve_dialect
from asynclm.tools import Toolbox

__all__ = [
    "DEFAULT_STRATEGIES", "DIALECT_STRATEGIES", "FRAMINGS", "SIM_ANSWER", "BenchConfig", "Run",
    "Variant", "default_config", "make_session", "split_key",
]

DEFAULT_STRATEGIES = ("sync", "sync-reprefill", "sync-parallel", "async")
DIALECT_STRATEGIES = ("sync", "async", BFCL_PROMPT)
"""The default strategies of a run comparing dialects (``--dialect``)."""
FRAMINGS = ("turn", "inline")
"""Where a native dialect puts a result: a turn of its own (the chat template's tool turn), or
inside the assistant's turn."""
SIM_ANSWER = "Done: every requested call was made."


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of speaking to the model: a dialect (registry name) and, for a native dialect,
    its result framing (None: CML, which has one). ``label`` names it in run keys and
    reports."""

    dialect: str
    framing: str | None
    label: str

    def build(self, engine: Engine | None) -> Dialect:
        """The dialect for ``engine`` (it reads the engine's chat template where it has one;
        None: the simulator's, which has none)."""
        return resolve_dialect(engine, self.dialect, framing=self.framing)


@dataclass(frozen=True, slots=True)
class Run:
    """One run of an item: its key in the records (``sync``; ``hermes/async`` when dialects
    are compared), its strategy and its variant (None: ``bfcl-prompt``, no runtime)."""

    key: str
    strategy: str
    variant: Variant | None


def split_key(key: str) -> tuple[str, str]:
    """A run key as (variant label, strategy): ``hermes/async`` -> (``hermes``, ``async``);
    a plain strategy (``async``, ``bfcl-prompt``) has the label ``""``."""
    label, _, strategy = key.rpartition("/")
    return label, strategy


@dataclass(frozen=True, slots=True)
class BenchConfig:
    category: str = "parallel"
    engine: Literal["sim", "llamacpp", "openai"] = "sim"
    model: str = "qwen2.5-coder-1.5b"
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    limit: int | None = None
    offset: int = 0
    seed: int = 0
    tpot_ms: float = 5.0
    ttft_ms: float = 0.0
    profile: str = "paper"
    cheat_sheet: bool = False
    max_tokens: int = 384
    deadline_s: float | None = 120.0
    threads: int | None = None
    write_ahead: bool = False
    """Multi-turn, simulator: the oracle writes a call on an instance right after the previous
    one was written (True), or only once its result is in (False, the paper's multi-step)."""
    ordered: bool = True
    """Multi-turn: calls on one BFCL instance keep emission order (``Ordered`` keys)."""

    base_url: str | None = None
    """``openai`` engine: the server (its tokenizer comes from ``model``)."""
    n_ctx: int = 8192
    """``llamacpp``: the context window (multi-turn prompts with BFCL's function documents need
    more than the default)."""
    adapter: str | None = None
    """``llamacpp``: a GGUF LoRA adapter applied to ``model`` (``asynclm finetune export``)."""
    enforce: bool = True
    """The runtime's protocol enforcement (``SessionConfig.enforce``); off to measure what a
    model does unaided."""
    dialects: tuple[str, ...] = ("cml",)
    """The dialects every item runs in (registry names: ``cml``, ``hermes``, ``pythonic``...),
    each with every runtime strategy. More than CML alone keys the runs ``<dialect>/<strategy>``
    (``hermes/async``); CML alone keeps the plain strategy keys."""
    framings: tuple[str, ...] = ("turn",)
    """Native dialects: where results go (:data:`FRAMINGS`); several make one variant each
    (``hermes-turn``, ``hermes-inline``). CML has no framing."""

    @property
    def variants(self) -> list[Variant]:
        """The dialect variants, in the order given (CML once, whatever the framings)."""
        out: list[Variant] = []
        for d in self.dialects:
            if d == "cml":
                out.append(Variant("cml", None, "cml"))
                continue
            for f in self.framings:
                out.append(Variant(d, f, d if len(self.framings) == 1 else f"{d}-{f}"))
        return out

    @property
    def keyed(self) -> bool:
        """Run keys name their variant (anything but CML alone)."""
        return [v.label for v in self.variants] != ["cml"]

    @property
    def runs(self) -> list[Run]:
        """Every run of an item: each strategy in each variant, ``bfcl-prompt`` once (in the
        order of ``strategies``; comparing dialects, variant by variant, ``bfcl-prompt``
        last)."""
        prompt = [Run(BFCL_PROMPT, BFCL_PROMPT, None)] if BFCL_PROMPT in self.strategies else []
        if not self.keyed:
            cml = self.variants[0]
            return [Run(s, s, None) if s == BFCL_PROMPT else Run(s, s, cml)
                    for s in self.strategies]
        return [Run(f"{v.label}/{s}", s, v) for v in self.variants
                for s in self.strategies if s != BFCL_PROMPT] + prompt

    @property
    def run_keys(self) -> tuple[str, ...]:
        return tuple(r.key for r in self.runs)

    @property
    def categories(self) -> list[str]:
        """``category`` may name several, comma-separated (``limit`` applies to each)."""
        return [c.strip() for c in self.category.split(",") if c.strip()]

    def validate(self) -> None:
        runnable = (*RUNNABLE_CATEGORIES, *MULTI_TURN_CATEGORIES, MULTI_STEP_PARALLEL)
        if not self.categories:
            raise ValueError("no category")
        for category in self.categories:
            if category not in runnable:
                raise ValueError(
                    f"category {category!r} is not runnable; choose one of {', '.join(runnable)}")
            if category not in RUNNABLE_CATEGORIES and BFCL_PROMPT in self.strategies:
                raise ValueError(f"{BFCL_PROMPT} runs single-turn categories only")
        if self.engine not in ("sim", "llamacpp", "openai"):
            raise ValueError(f"unknown engine {self.engine!r}; choose sim, llamacpp or openai")
        if self.engine == "openai" and not self.base_url:
            raise ValueError("--engine openai needs --base-url")
        if self.adapter is not None and self.engine != "llamacpp":
            raise ValueError("--adapter needs --engine llamacpp")
        if not self.strategies:
            raise ValueError("no strategies")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError("a strategy is listed twice")
        for s in self.strategies:
            if s != BFCL_PROMPT:
                get_strategy(s)  # raises with the list of names
        get_profile(self.profile)
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if not self.dialects or len(set(self.dialects)) != len(self.dialects):
            raise ValueError("no dialect, or a dialect listed twice")
        for d in self.dialects:
            if d not in DIALECTS:
                raise ValueError(f"unknown dialect {d!r}; choose from {', '.join(DIALECTS)}")
        if not self.framings or len(set(self.framings)) != len(self.framings):
            raise ValueError("no framing, or a framing listed twice")
        for f in self.framings:
            if f not in FRAMINGS:
                raise ValueError(f"unknown framing {f!r}; choose from {', '.join(FRAMINGS)}")
        if self.keyed and any(c not in RUNNABLE_CATEGORIES for c in self.categories):
            raise ValueError("dialects other than cml (and framings) run single-turn categories"
                             " only")


def default_config(**kw: Any) -> BenchConfig:
    """A :class:`BenchConfig` with ``strategies``, ``dialects`` and ``framings`` given as comma
    lists or sequences. Comparing dialects without naming strategies runs
    :data:`DIALECT_STRATEGIES` (sync, async and BFCL's own prompt)."""
    for name in ("strategies", "dialects", "framings"):
        v = kw.get(name)
        if isinstance(v, str):
            kw[name] = tuple(x.strip() for x in v.split(",") if x.strip())
        elif v is not None:
            kw[name] = tuple(v)
    cfg = BenchConfig(**kw)
    if kw.get("strategies") is None and cfg.keyed:
        cfg = replace(cfg, strategies=DIALECT_STRATEGIES)
    return cfg


def make_session(engine: Engine, tools: Toolbox, strategy: str, cfg: BenchConfig,
                 item: BfclItem, system: str | None = None,
                 dialect: Dialect | None = None) -> Session:
    """A session for one run (or turn) in ``dialect`` (default CML); a joined item gets
    ``max_tokens`` per sample."""
    budget = cfg.max_tokens * len(parts(item))
    return Session(
        engine, tools, strategy=get_strategy(strategy), system=system,
        config=SessionConfig(max_tokens=budget, deadline_s=cfg.deadline_s, enforce=cfg.enforce),
        trace_meta={"benchmark": "bfcl", "item": item.id, "engine": cfg.engine},
        dialect=dialect if dialect is not None else "cml",
    )
