"""The BFCL benchmark's configuration, and the session one run uses."""

from __future__ import annotations

from dataclasses import dataclass
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
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import Toolbox

__all__ = ["DEFAULT_STRATEGIES", "SIM_ANSWER", "BenchConfig", "default_config", "make_session"]

DEFAULT_STRATEGIES = ("sync", "sync-reprefill", "sync-parallel", "async")
SIM_ANSWER = "Done: every requested call was made."


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


def default_config(**kw: Any) -> BenchConfig:
    """A :class:`BenchConfig` with ``strategies`` given as a comma list or a sequence."""
    s = kw.get("strategies")
    if isinstance(s, str):
        kw["strategies"] = tuple(x.strip() for x in s.split(",") if x.strip())
    elif s is not None:
        kw["strategies"] = tuple(s)
    return BenchConfig(**kw)


def make_session(engine: Engine, tools: Toolbox, strategy: str, cfg: BenchConfig,
             item: BfclItem, system: str | None = None) -> Session:
    """A session for one run (or turn); a joined item gets ``max_tokens`` per sample."""
    budget = cfg.max_tokens * len(parts(item))
    return Session(
        engine, tools, strategy=get_strategy(strategy), system=system,
        config=SessionConfig(max_tokens=budget, deadline_s=cfg.deadline_s, enforce=cfg.enforce),
        trace_meta={"benchmark": "bfcl", "item": item.id, "engine": cfg.engine},
    )
