"""Engines for server sessions: a fresh real-time simulator per session, or an instance from a
small pool of in-process llama.cpp engines per model (a session holds one for its whole run;
others queue)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asynclm.engines.base import Engine
from asynclm.engines.llamacpp import LlamaCppEngine
from asynclm.errors import EngineError
from asynclm.models import list_models


class EngineUnavailable(EngineError, ValueError):
    """The requested model is not allowed or not in the cache."""


class _Pool:
    def __init__(self, model: str, size: int, threads: int | None) -> None:
        self.model, self.size, self.threads = model, size, threads
        self.free: list[Any] = []
        self.count = 0
        self.cond = asyncio.Condition()

    async def acquire(self) -> Any:
        async with self.cond:
            await self.cond.wait_for(lambda: bool(self.free) or self.count < self.size)
            if self.free:
                return self.free.pop()
            self.count += 1
        try:
            return await asyncio.to_thread(
                LlamaCppEngine.from_name, self.model, n_threads=self.threads)
        except BaseException:
            async with self.cond:
                self.count -= 1
                self.cond.notify()
            raise

    async def release(self, engine: Any) -> None:
        async with self.cond:
            self.free.append(engine)
            self.cond.notify()

    async def aclose(self) -> None:
        for engine in self.free:
            await engine.aclose()
        self.free = []


class EngineHub:
    """Hands out engines. ``models``: names a request may use with ``llamacpp``."""

    def __init__(self, *, models: tuple[str, ...], instances: int, threads: int | None) -> None:
        self._models = models
        self._instances = instances
        self._threads = threads
        self._pools: dict[str, _Pool] = {}

    def check_model(self, model: str) -> None:
        """Raise :class:`EngineUnavailable` unless ``model`` is allowed and assembled."""
        if model not in self._models:
            raise EngineUnavailable(f"model {model!r} not served; choose one of "
                                    f"{', '.join(self._models)}")
        if not any(m.name == model and m.assembled for m in list_models()):
            raise EngineUnavailable(f"model {model!r} is not in the cache: run "
                                    f"`asynclm models pull {model}` first")

    @asynccontextmanager
    async def llama(self, model: str) -> AsyncIterator[Engine]:
        pool = self._pools.get(model)
        if pool is None:
            pool = self._pools[model] = _Pool(model, self._instances, self._threads)
        engine = await pool.acquire()
        try:
            yield engine
        finally:
            await asyncio.shield(pool.release(engine))

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
