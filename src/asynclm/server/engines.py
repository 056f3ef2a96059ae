"""Engines for server sessions, and the slots that decide who decodes.

A ``sim`` session gets a fresh real-time simulator of its own (the app builds it). A session on
a real model gets its engine from the :class:`EngineHub`, in one of two ways, chosen by the
operator when the server starts (never by a request):

- **in process** (the default): one :class:`~asynclm.engines.batched.BatchedLlamaEngine` per
  model, loaded on first use, whose single worker thread decodes every session of that model
  in one batch (one copy of the weights, one llama.cpp context). A session holds one of its
  sequences (a *slot*) for its whole run;
- **over HTTP** (``engine_url``, the CLI's ``--engine-url``): the model runs in an inference
  server (vLLM, SGLang, llama.cpp's ``llama-server``); each session is an
  :class:`~asynclm.engines.openai_http.HttpEngine` of its own against that URL, its tokens
  counted with the served model's GGUF vocabulary. The server is probed once (its mode: token
  ids where it offers them) on first use.

``llama-server`` keeps each of its parallel slots' KV cache apart and gives a request any idle
slot: a resume sent right after the engine dropped a stream (to append a tool result) finds the
session's own slot still busy with the dropped request and lands in another, with nothing
cached (seen on a real ``llama-server``). So by default each session is pinned to a slot of its
own (``id_slot`` in every request, from the slot count ``/props`` reports; sessions beyond it
are not pinned): its resumes wait for that slot and find their prefix there. This assumes the
``llama-server`` serves this asynclm server only (``pin_slots=False`` otherwise).

Either way a model has ``max_batch`` slots and a FIFO queue of at most ``max_queue`` waiting
sessions (:class:`Slot`, reserved when a session is created): a session that finds every slot
taken waits in the queue (its position is visible, it can be cancelled there, and it never
fails for having waited); a session that finds the queue full is refused at once
(:class:`~asynclm.server.registry.QueueFull`: the routes answer 429 with ``Retry-After``).
Over HTTP the slots bound the requests in flight to the inference server: set ``max_batch`` to
its parallel slots (``llama-server -np N``) so that sessions queue here, visibly, rather than
inside it where a stream can time out.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from asynclm.engines.base import Engine
from asynclm.errors import EngineError
from asynclm.models import list_models
from asynclm.server.registry import QueueFull

__all__ = ["BatchedEngine", "EngineHub", "EngineUnavailable", "Slot"]


class EngineUnavailable(EngineError, ValueError):
    """The requested model is not allowed or not in the cache."""


class BatchedEngine(Protocol):
    """What the hub uses of :class:`~asynclm.engines.batched.BatchedLlamaEngine` (a test
    passes a fake through ``EngineHub(load=...)``)."""

    @property
    def active(self) -> int:
        """Sequences held now."""
        ...

    @property
    def waiting(self) -> int:
        """Acquires waiting for a sequence."""
        ...

    async def acquire(self, *, wait: bool = True) -> Any:
        """A sequence: an :class:`~asynclm.engines.base.Engine` with ``aclose()`` (frees it)."""
        ...

    def stats(self) -> Mapping[str, Any]: ...

    async def aclose(self) -> None: ...


class Slot:
    """A session's place on one model: first (maybe) waiting in the model's FIFO queue, then
    holding one of its slots until :meth:`release`. Made by :meth:`EngineHub.reserve`;
    :meth:`wait` returns once the slot is held (cancellable: the place is given up only by
    :meth:`release`, which the session's owner calls exactly when it is over, in every case)."""

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate
        self._held = asyncio.Event()
        self._released = False

    @property
    def held(self) -> bool:
        return self._held.is_set() and not self._released

    @property
    def position(self) -> int | None:
        """1 for the next session to get a slot, 2 after it...; ``None`` once held or
        released."""
        try:
            return self._gate.queue.index(self) + 1
        except ValueError:
            return None

    async def wait(self) -> None:
        """Return once this slot is held (at once if it was free at reservation)."""
        if self._released:
            raise RuntimeError("the slot was released")
        await self._held.wait()

    def release(self) -> None:
        """Give the slot (or the place in the queue) back; the next waiter gets it. Idempotent;
        never blocks."""
        if self._released:
            return
        self._released = True
        gate = self._gate
        if self._held.is_set():
            gate.holders -= 1
            gate.grant()
        else:
            gate.queue.remove(self)


class _Gate:
    """``size`` slots and a FIFO queue of at most ``max_queue`` :class:`Slot`s."""

    def __init__(self, name: str, size: int, max_queue: int, retry_after_s: int) -> None:
        self.name, self.size, self.max_queue = name, size, max_queue
        self.retry_after_s = retry_after_s
        self.holders = 0
        self.queue: deque[Slot] = deque()

    def reserve(self) -> Slot:
        slot = Slot(self)
        if self.holders < self.size and not self.queue:
            self.holders += 1
            slot._held.set()
        elif len(self.queue) < self.max_queue:
            self.queue.append(slot)
        else:
            raise QueueFull(
                f"model {self.name!r} is busy: {self.holders} sessions hold all {self.size} "
                f"slots and {len(self.queue)} wait (the queue's limit); try again later",
                retry_after_s=self.retry_after_s)
        return slot

    def grant(self) -> None:
        while self.queue and self.holders < self.size:
            slot = self.queue.popleft()
            self.holders += 1
            slot._held.set()

    def counts(self) -> dict[str, int]:
        return {"slots": self.size, "active": self.holders, "waiting": len(self.queue),
                "max_queue": self.max_queue}


class _Lane:
    """One served model: its gate and, in process, its batched engine (loaded once)."""

    def __init__(self, gate: _Gate) -> None:
        self.gate = gate
        self.engine: BatchedEngine | None = None
        self.loading: asyncio.Future[BatchedEngine] | None = None


def _load_batched(model: str, *, threads: int | None, max_batch: int,
                  kv_budget: int | None) -> BatchedEngine:
    from asynclm.engines.batched import BatchedLlamaEngine

    kwargs: dict[str, Any] = {"n_seq_max": max_batch}
    if threads is not None:
        kwargs["n_threads"] = threads
    if kv_budget is not None:
        kwargs["kv_budget_tokens"] = kv_budget
    engine: BatchedEngine = BatchedLlamaEngine.from_name(model, **kwargs)
    return engine


class EngineHub:
    """Hands out engines for the served models (see the module docstring).

    ``models``: the names a request may use. ``max_batch``: slots per model (the batched
    engine's ``n_seq_max``; over HTTP, requests in flight). ``max_queue``: sessions that may
    wait for a slot, per model. ``threads``: the batched engine's llama.cpp threads (``None``:
    its default). ``kv_budget``: its KV budget in tokens (``None``: its context size).
    ``engine_url``: serve the model over HTTP from that inference server instead (then
    ``models`` has one name: the GGUF vocabulary the tokens are counted with);
    ``engine_api_key``: its bearer token; ``pin_slots``: give each session a ``llama-server``
    slot of its own (``id_slot``; see the module docstring). ``retry_after_s``: the
    ``Retry-After`` of a full queue. ``load`` (tests): a blocking ``model -> engine`` used
    instead of ``BatchedLlamaEngine.from_name``; ``tokenizer`` and ``http_options`` (tests):
    the HTTP engines' tokenizer and extra :class:`HttpEngine` arguments."""

    def __init__(
        self, *, models: tuple[str, ...], max_batch: int = 8, max_queue: int = 32,
        threads: int | None = None, kv_budget: int | None = None,
        engine_url: str | None = None, engine_api_key: str | None = None,
        pin_slots: bool = True, retry_after_s: int = 5,
        load: Callable[[str], BatchedEngine] | None = None, tokenizer: Any = None,
        http_options: Mapping[str, Any] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 0:
            raise ValueError("max_batch must be at least 1 and max_queue at least 0")
        self._models = models
        self.max_batch, self.max_queue = max_batch, max_queue
        self.engine_url = engine_url.rstrip("/") if engine_url else None
        self._api_key = engine_api_key
        self._retry_after_s = retry_after_s
        self._load: Callable[[str], BatchedEngine] = load or (
            lambda m: _load_batched(m, threads=threads, max_batch=max_batch,
                                    kv_budget=kv_budget))
        self._lanes: dict[str, _Lane] = {}
        self._tokenizer = tokenizer
        self._own_tokenizer = tokenizer is None
        self._http_options = dict(http_options or {})
        self._probed: asyncio.Future[tuple[Any, dict[str, Any]]] | None = None
        self._pin_slots = pin_slots
        self._pins: list[int] = []  # llama-server slot ids no session holds
        self._closed = False

    @property
    def backend(self) -> str:
        """``batched`` (in process) or ``http`` (``engine_url``)."""
        return "http" if self.engine_url else "batched"

    def check_model(self, model: str) -> None:
        """Raise :class:`EngineUnavailable` unless ``model`` is allowed and assembled."""
        if model not in self._models:
            raise EngineUnavailable(f"model {model!r} not served; choose one of "
                                    f"{', '.join(self._models)}")
        if not any(m.name == model and m.assembled for m in list_models()):
            raise EngineUnavailable(f"model {model!r} is not in the cache: run "
                                    f"`asynclm models pull {model}` first")

    # -- slots ----------------------------------------------------------------------------

    def _lane(self, model: str) -> _Lane:
        lane = self._lanes.get(model)
        if lane is None:
            lane = self._lanes[model] = _Lane(
                _Gate(model, self.max_batch, self.max_queue, self._retry_after_s))
        return lane

    def reserve(self, engine: str, model: str | None) -> Slot | None:
        """A :class:`Slot` on ``model`` for a new session (held at once if one is free, else a
        place in the queue); ``None`` for an engine without slots (``sim``). Raises
        :class:`~asynclm.server.registry.QueueFull` when the queue is full. Synchronous, so
        that two requests can never both take the last place."""
        if engine == "sim" or model is None:
            return None
        return self._lane(model).gate.reserve()

    # -- engines --------------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, model: str) -> AsyncIterator[Engine]:
        """An engine for a session on ``model``, for the ``async with`` block: a sequence of
        the model's batched engine (loaded on first use; freed on exit), or a new
        :class:`HttpEngine` to ``engine_url`` (closed on exit). The caller holds the model's
        :class:`Slot` (the session registry waits for it first)."""
        if self._closed:
            raise EngineUnavailable("the server is shutting down")
        if self.engine_url:
            tokenizer, info = await self._probe_once()
            pin = self._pins.pop(0) if self._pins else None
            try:
                http = self._http_engine(tokenizer, info, pin)
                try:
                    yield http
                finally:
                    await asyncio.shield(http.aclose())
            finally:
                if pin is not None:
                    self._pins.append(pin)
                    self._pins.sort()
            return
        batched = await self._batched(model)
        seq = await batched.acquire()
        try:
            yield seq
        finally:
            await asyncio.shield(seq.aclose())

    async def _batched(self, model: str) -> BatchedEngine:
        lane = self._lane(model)
        if lane.engine is not None:
            return lane.engine
        if lane.loading is None:  # one load, whoever waits for it (a cancelled waiter too)
            lane.loading = asyncio.ensure_future(asyncio.to_thread(self._load, model))
        loading = lane.loading
        try:
            engine = await asyncio.shield(loading)
        except Exception:
            if lane.loading is loading:
                lane.loading = None  # the next session tries again
            raise
        lane.engine = engine
        return engine

    async def _probe_once(self) -> tuple[Any, dict[str, Any]]:
        if self._probed is None:
            self._probed = asyncio.ensure_future(self._probe())
        probed = self._probed
        try:
            return await asyncio.shield(probed)
        except Exception:
            if self._probed is probed:
                self._probed = None
            raise

    def _http_engine(self, tokenizer: Any, info: dict[str, Any], pin: int | None) -> Any:
        from asynclm.engines.openai_http import HttpEngine

        assert self.engine_url is not None
        options = dict(self._http_options)
        if pin is not None:
            options["extra_body"] = {**options.get("extra_body", {}), "id_slot": pin}
        return HttpEngine(self.engine_url, tokenizer, mode=info["mode"],
                          model=info.get("model"), api_key=self._api_key,
                          llama_cpp_python=bool(info.get("llama_cpp_python")), **options)

    async def _probe(self) -> tuple[Any, dict[str, Any]]:
        """The tokenizer (the served model's GGUF vocabulary, loaded once) and what the
        inference server offers (its mode, its model id), asked once."""
        from asynclm.engines.openai_http import GGUFTokenizer, HttpEngine

        tokenizer = self._tokenizer
        if tokenizer is None:
            tokenizer = self._tokenizer = await asyncio.to_thread(
                GGUFTokenizer.from_name, self._models[0])
        assert self.engine_url is not None
        probe = HttpEngine(self.engine_url, tokenizer, api_key=self._api_key,
                           **self._http_options)
        try:
            mode, info = await probe.probe()
        finally:
            await probe.aclose()
        slots = info.get("slots")
        if self._pin_slots and mode == "llama-server" and isinstance(slots, int):
            self._pins = list(range(slots))
        return tokenizer, {**info, "mode": mode}

    # -- state ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Per model: ``slots``, ``active`` (sessions holding one), ``waiting`` (queued),
        ``max_queue``, ``loaded``; in process also the batched engine's own ``stats()`` under
        ``engine``; over HTTP the probed ``mode``."""
        out: dict[str, Any] = {}
        for model, lane in self._lanes.items():
            entry: dict[str, Any] = {**lane.gate.counts()}
            if self.engine_url:
                probed = self._probed
                done = probed is not None and probed.done() and not probed.cancelled() and \
                    probed.exception() is None
                entry["loaded"] = done
                if done:
                    assert probed is not None
                    entry["mode"] = str(probed.result()[1]["mode"])
            else:
                entry["loaded"] = lane.engine is not None
                if lane.engine is not None:
                    entry["engine"] = _plain(dict(lane.engine.stats()))
            out[model] = entry
        return out

    async def aclose(self) -> None:
        """Close every loaded engine (a load still running is waited for, then closed)."""
        self._closed = True
        for lane in self._lanes.values():
            engine, lane.engine = lane.engine, None
            if engine is None and lane.loading is not None:
                try:
                    engine = await lane.loading
                except BaseException:  # noqa: BLE001 - a failed load left nothing to close
                    engine = None
            lane.loading = None
            if engine is not None:
                await engine.aclose()
        probed, self._probed = self._probed, None
        if probed is not None and not probed.done():
            probed.cancel()
        self._pins = []
        tok = self._tokenizer
        if tok is not None and self._own_tokenizer and callable(getattr(tok, "close", None)):
            tok.close()


def _plain(value: Any) -> Any:
    """``value`` with only JSON types (numbers, strings, lists, dicts with string keys)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
