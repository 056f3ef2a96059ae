"""One llama.cpp model serving many sessions at once: their decode steps share each
``llama_decode`` call.

On a CPU, one ``llama_decode`` of k tokens from k different sequences costs far less than k
single-token calls (the weights are read once per call), so sessions that step at the same time
should step together. :class:`BatchedLlamaEngine` loads ONE model and ONE llama.cpp context with
``n_seq_max`` sequences in a unified KV cache; :meth:`BatchedLlamaEngine.acquire` hands out a
:class:`BatchedSequence` per session, which is an :class:`~asynclm.engines.base.Engine` in its
own right (prefill, step, append, rollback, tokenize, ...).

How it works:

- One worker thread owns the llama.cpp context (the event loop never blocks on it). A
  sequence's coroutines queue operations; the operations of one sequence run in submission
  order, each sequence's head operation is served as soon as possible. Results are handed back
  with ``loop.call_soon_threadsafe``. A cancelled coroutine does not stop its operation: it runs
  to completion and its result is dropped, so the sequence stays consistent (``n_tokens``
  says what it holds), as with :class:`~asynclm.engines.llamacpp.LlamaCppEngine`.
- Each worker iteration packs the pending work of every sequence into ONE ``llama_decode``
  batch (:func:`asynclm.engines._batch.pack`): one token for each sequence that steps, then
  chunks of appends, prefills and recomputation, at most ``prefill_chunk`` of them while decode
  steps are in the batch. Logits are asked only where a step samples.
- Each operation's tokens are evaluated as one unit, as ``LlamaCppEngine`` evaluates them (a
  prefill's tokens, an append's, a step's sampled token, the token a rollback evaluates again),
  never merged with the next operation's: a sequence alone on the engine computes exactly what
  ``LlamaCppEngine`` computes. The logits of a sequence's last token are copied out of the
  context (other sequences' decodes overwrite the context's buffer). A step samples from them
  and returns at once; its token is evaluated in the next batch while the session handles it.
  ``rollback(n)`` removes the cells from ``n-1`` on (``llama_memory_seq_rm``) and evaluates
  token ``n-1`` again, so the next step sees fresh logits.
- After a round of steps, the worker waits a few milliseconds (``gather_s``) for the sequences
  that just got their token to ask for the next one, so that they keep stepping together.
- Prefix sharing: a prefill whose tokens start like the cached tokens of another sequence
  (live, or the retained cache of a closed one) copies those cells (``llama_memory_seq_cp``;
  in a unified cache the cells are shared, not duplicated) instead of computing them again; the
  return value counts them as cached.
- The KV cache of a sequence stays while its session waits on its tools, up to
  ``kv_budget_tokens`` cells in all. When a batch does not fit, the engine evicts first the
  retained caches of closed sequences, then the idle sequence that has waited longest (its
  cells are removed, its tokens kept); its next operation first recomputes them (after copying
  any prefix another sequence still holds). A sequence reports these as
  :class:`~asynclm.engines.base.KvEvent` (capability ``kv_events``); a session shows them in its
  trace (``kv.evicted``, ``kv.recomputed``) and counters.
- Scheduling when more work is pending than one batch holds: ``fifo`` serves in order of
  arrival; ``priority`` serves first a sequence whose interrupt was just appended or that just
  came back from waiting, then the least served one.

Greedy decoding, one sequence alone on an empty cache: token for token what
:class:`LlamaCppEngine` gives for the same prompt, appends and rollbacks (the same evaluation
units, the same kernels, the same cells). Otherwise the same as long as no near tie between the
two best tokens comes up, because a token's logits are not bit-identical across layouts:

- they depend on the size of the ``llama_decode`` batch and the row's place in it: ggml's CPU
  matrix products take one kernel for a single row, another for rows of a batch (repacked
  weights, four rows at a time) and a third for some leftover rows; on the bundled 0.5B (Q8_0)
  these disagree by up to ~0.35 in a logit, so a step in a batch of k >= 2 rows differs from
  ``LlamaCppEngine``'s single-row step (chunked prefills and recomputation regroup rows too);
- they depend on where the sequence's cells sit in the shared cache (attention runs over the
  used cells with a mask, and another layout sums in another order): up to ~0.4 in a logit on
  the 0.5B when the same prompt starts at cell 100 or 300 instead of 0.

``tests/engines/test_batched.py`` checks equality on the bundled 0.5B with prompts whose
greedy path has no near tie (the two best logits >= 0.9 apart all along).

Requires the ``llama`` extra: ``pip install 'asynclm[llama]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asynclm import models
from asynclm.engines._batch import POLICIES, Demand, Idle, KvCells, Policy, eviction_order, pack
from asynclm.engines._llama import Vocab, import_llama
from asynclm.engines._vocabulary import VocabularySide
from asynclm.engines.base import Capabilities, ChatMessage, KvEvent
from asynclm.engines.llamacpp import _default_threads, check_sampling, model_file, pick_token
from asynclm.errors import ContextFullError, EngineBusy, EngineClosedError, describe

__all__ = ["BatchedLlamaEngine", "BatchedSequence", "EngineBusy"]

_RESUME_AFTER_S = 0.05
"""An operation that comes after the sequence was idle this long marks a session back from
waiting (on its tools): ``priority`` serves it first."""

OpKind = Literal["prefill", "append", "step", "rollback", "close"]


@dataclass(slots=True, eq=False)
class _Op:
    kind: OpKind
    arg: Any
    loop: asyncio.AbstractEventLoop
    fut: asyncio.Future[Any]
    arrival: int
    at: float
    started: bool = False
    done: bool = False
    target: int = 0
    """The sequence's evaluated length (``n_kv``) at which the operation is complete."""
    result: Any = None
    undo: int | None = None
    """An append: the context's length before it (to undo it when it cannot be evaluated)."""


@dataclass(slots=True, eq=False)
class _Slot:
    """One llama.cpp sequence (``seq_id`` = ``id``) and what the worker knows of it."""

    id: int
    tokens: list[int] = field(default_factory=list)
    n_kv: int = 0
    """``tokens[:n_kv]`` have cells in the KV cache; the rest are pending."""
    cuts: list[int] = field(default_factory=list)
    """Ends of the evaluation units still pending (increasing, each > ``n_kv``, the last one
    ``len(tokens)``): each operation's tokens are evaluated as one unit, never merged with the
    next operation's, as :class:`LlamaCppEngine` evaluates them."""
    logits: Any = None
    fresh: bool = False
    """``logits`` hold the next-token scores after the last token (a step may sample)."""
    suspended: bool = False
    """Evicted while idle: its tokens are recomputed when its next operation comes."""
    stale: list[int] | None = None
    """Cells of a closed sequence kept as a cache to share (its evaluated tokens); then
    ``tokens`` is empty and ``n_kv`` 0."""
    live: bool = False
    ops: deque[_Op] = field(default_factory=deque)
    idle_since: float = 0.0
    service: int = 0
    boosted: bool = False
    recompute_until: int = 0
    """Positions below this were evaluated before an eviction: evaluating them again is
    recomputation."""
    recomputing: int = 0
    evictions: int = 0
    recomputed: int = 0
    prompt_len: int = 0
    """Tokens of the sequence's last prefill (its prompt): what a closed sequence retains."""
    events: list[KvEvent] = field(default_factory=list)
    rng: Any = None
    error: BaseException | None = None
    """Why the last evaluation failed, for the next operation."""

    def cached(self) -> list[int]:
        """The tokens whose cells are in the cache (a prefix another sequence may copy)."""
        return self.stale if self.stale is not None else self.tokens[: self.n_kv]


class BatchedLlamaEngine(VocabularySide):
    """ONE GGUF model and llama.cpp context in this process, shared by up to ``n_seq_max``
    sequences that step together (see the module's docstring).

    >>> engine = BatchedLlamaEngine.from_name("qwen2.5-coder-0.5b", n_threads=2, n_seq_max=4)
    >>> seq = await engine.acquire()
    >>> await seq.prefill(seq.tokenize_chat([ChatMessage("user", "Hi")]))
    >>> tok = await seq.step()
    >>> await seq.aclose(); await engine.aclose()
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 8192,
        n_seq_max: int = 8,
        n_threads: int | None = None,
        n_batch: int = 512,
        kv_budget_tokens: int | None = None,
        policy: Policy = "priority",
        prefill_chunk: int = 128,
        seed: int = 0,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        gather_s: float | None = None,
        retain_closed: bool = True,
        verbose: bool = False,
    ) -> None:
        """Load ``model_path`` (blocks for the load; from async code use
        ``await asyncio.to_thread(BatchedLlamaEngine, path)``).

        ``n_ctx`` is the size of the KV cache all sequences share (llama.cpp rounds it up to a
        multiple of 256), and the most tokens one sequence may hold. ``kv_budget_tokens`` (at
        most the cache's size, which is the default) is the number of cells the engine lets
        sequences keep before it evicts idle ones. ``n_batch`` (>= ``n_seq_max``) caps the tokens of
        one ``llama_decode`` call; ``prefill_chunk`` caps the prefill tokens that go along with
        decode steps in one call. ``policy``: ``priority`` or ``fifo`` (see
        :func:`asynclm.engines._batch.pack`).
        ``gather_s``: how long the worker waits, after a round of steps, for those sequences to
        ask for their next token (None: a quarter of the last decode's time, at most 30 ms).
        ``retain_closed``: a closed sequence's prompt cells stay as a cache that later prefills may
        share, until space is needed. Sampling (``seed``, ``temperature``, ``top_k``,
        ``top_p``) is as in :class:`~asynclm.engines.llamacpp.LlamaCppEngine`; each sequence
        has its own generator, seeded with ``seed``.
        """
        check_sampling(temperature, top_p)
        if n_seq_max < 1 or n_batch < 1 or prefill_chunk < 1:
            raise ValueError("n_seq_max, n_batch and prefill_chunk must be >= 1")
        if n_batch < n_seq_max:  # llama.cpp sizes its output buffer for n_seq_max outputs
            raise ValueError(f"n_batch ({n_batch}) must be >= n_seq_max ({n_seq_max})")
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r} (expected one of {POLICIES})")
        if kv_budget_tokens is not None and kv_budget_tokens < 1:
            raise ValueError("kv_budget_tokens must be >= 1")
        self._lib = import_llama()
        import numpy

        self._np = numpy
        self.model_path = model_file(model_path)
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self.seed = int(seed)
        self.policy: Policy = policy
        self.n_seq_max = int(n_seq_max)
        self.n_batch = int(n_batch)
        self.prefill_chunk = int(prefill_chunk)
        self.gather_s = gather_s
        self.retain_closed = retain_closed
        self.n_threads = n_threads or _default_threads()
        self.n_ctx: int = n_ctx  # the worker sets the context's actual size after loading
        self._cond = threading.Condition()
        self._stopping = False
        self._closed = False
        self._arrival = itertools.count()
        self._slots = [_Slot(i) for i in range(self.n_seq_max)]
        self._free: deque[_Slot] = deque(self._slots)
        self._waiters: deque[asyncio.Future[_Slot]] = deque()
        self._cells = KvCells()
        self._expect: set[int] = set()
        self._last_decode_s = 0.0
        self._stats: dict[str, float] = dict.fromkeys((
            "decode_calls", "tokens_decoded", "steps", "step_rows", "evictions", "recomputed_tokens",
            "cached_tokens", "dropped_cache_tokens", "prefills", "decode_s", "busy_s",
            "gather_wait_s"), 0)  # fmt: skip
        self._hist: dict[int, int] = {}
        self._ctx: Any = None
        self._model: Any = None
        self._mem: Any = None
        self._batch: Any = None
        loaded: ConcurrentFuture[Vocab] = ConcurrentFuture()
        self._thread = threading.Thread(
            target=self._run, args=(n_ctx, verbose, loaded), daemon=True,
            name=f"batched-llama:{self.model_path.name}",
        )  # fmt: skip
        self._thread.start()
        try:
            self._vocab = loaded.result()
        except BaseException:
            self._thread.join()
            self._closed = True
            raise
        budget = self.n_ctx if kv_budget_tokens is None else min(kv_budget_tokens, self.n_ctx)
        self.kv_budget_tokens: int = budget
        self._init_vocabulary(self._lib, self._vocab)

    @classmethod
    def from_name(cls, name: str | None = None, **kwargs: Any) -> BatchedLlamaEngine:
        """A bundled model by registry name (see :mod:`asynclm.models`), pulled if needed."""
        return cls(models.model_path(name or models.DEFAULT_MODEL), **kwargs)

    # -- sequences (event loop side) -----------------------------------------------------------

    async def acquire(self, *, wait: bool = True) -> BatchedSequence:
        """A sequence of its own (an empty context). When all ``n_seq_max`` are taken, waits
        for one to be closed (first come, first served), or raises :class:`EngineBusy` with
        ``wait=False``. A waiting acquire may be cancelled."""
        self._check_open()
        slot = self._take_free()
        if slot is None:
            if not wait:
                raise EngineBusy(f"all {self.n_seq_max} sequences of the engine are in use")
            fut: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                slot = await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._release(fut.result())  # handed over, but we were cancelled
                raise
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)
        with self._cond:
            slot.live = True
            slot.tokens = []
            slot.n_kv = 0
            slot.cuts = []
            slot.fresh = slot.suspended = False
            slot.error = None
            slot.events = []
            slot.evictions = slot.recomputed = slot.service = 0
            slot.recompute_until = slot.recomputing = 0
            slot.boosted = False
            slot.idle_since = time.monotonic()
            slot.rng = self._np.random.default_rng(self.seed)
        return BatchedSequence(self, slot)

    @property
    def waiting(self) -> int:
        """Acquires waiting for a free sequence."""
        return sum(1 for f in self._waiters if not f.done())

    @property
    def active(self) -> int:
        """Sequences acquired and not yet closed."""
        return self.n_seq_max - len(self._free)

    def _take_free(self) -> _Slot | None:
        if not self._free:
            return None
        for slot in self._free:  # a slot without a retained cache first: keep caches to share
            if slot.stale is None and slot.n_kv == 0:
                self._free.remove(slot)
                return slot
        return self._free.popleft()  # else the cache retained the longest ago

    def _release(self, slot: _Slot) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(slot)
                return
        self._free.append(slot)

    def stats(self) -> dict[str, Any]:
        """Counters since the engine started: ``decode_calls``, ``tokens_decoded``,
        ``tokens_per_decode`` (mean batch size in tokens), ``steps`` (tokens sampled),
        ``step_rows`` (sampled tokens evaluated alone for their sequence), ``steps_per_decode``
        (their mean per decode call: how many sequences step together), ``batch_hist`` (decode calls
        by batch size in tokens: ``"1"``, ``"2"``, ``"3-4"``, ...), ``evictions``,
        ``recomputed_tokens``, ``cached_tokens`` (prefill tokens served from the cache),
        ``dropped_cache_tokens`` (retained caches evicted), ``decode_s`` (time inside
        ``llama_decode``), ``busy_s`` (worker time outside waits), ``python_ms_per_decode``
        (worker time per decode call outside ``llama_decode``), ``gather_wait_s``,
        ``kv_used``, ``kv_budget``, ``active``, ``waiting``."""
        with self._cond:
            s: dict[str, Any] = dict(self._stats)
            hist = dict(self._hist)
            used = self._cells.used
        for k in ("decode_calls", "tokens_decoded", "steps", "step_rows", "evictions",
                  "recomputed_tokens", "cached_tokens", "dropped_cache_tokens", "prefills"):
            s[k] = int(s[k])
        calls = s["decode_calls"]
        s["tokens_per_decode"] = s["tokens_decoded"] / calls if calls else 0.0
        s["steps_per_decode"] = s["step_rows"] / calls if calls else 0.0
        s["python_ms_per_decode"] = (
            1000 * (s["busy_s"] - s["decode_s"]) / calls if calls else 0.0)
        s["batch_hist"] = {_bucket_name(b): n for b, n in sorted(hist.items())}
        s["kv_used"] = used
        s["kv_budget"] = self.kv_budget_tokens
        s["active"] = self.active
        s["waiting"] = self.waiting
        return s

    # -- submission (event loop side) ----------------------------------------------------------

    def _submit(self, slot: _Slot, kind: OpKind, arg: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cond:
            if self._stopping:
                raise EngineClosedError("the engine is closed")
            slot.ops.append(_Op(kind, arg, loop, fut, next(self._arrival), time.monotonic()))
            self._cond.notify()
        return fut

    # -- worker thread -------------------------------------------------------------------------

    def _run(self, n_ctx: int, verbose: bool, loaded: ConcurrentFuture[Vocab]) -> None:
        lib = self._lib
        log = logging.getLogger("llama-cpp-python")  # it prints llama.cpp's log below its level
        try:
            if not verbose:
                log.setLevel(logging.CRITICAL + 1)
            try:
                lib.llama_backend_init()
                mparams = lib.llama_model_default_params()
                self._model = lib.llama_model_load_from_file(str(self.model_path).encode(),
                                                             mparams)
                if not self._model:
                    raise ValueError(f"could not load the model {self.model_path}")
                cparams = lib.llama_context_default_params()
                cparams.n_ctx = n_ctx
                cparams.n_batch = self.n_batch
                cparams.n_ubatch = self.n_batch  # one batch, one ubatch: all or nothing
                cparams.n_seq_max = self.n_seq_max
                cparams.n_threads = self.n_threads
                cparams.n_threads_batch = self.n_threads
                cparams.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED  # as Llama's default
                if any(f == "kv_unified" for f, *_ in lib.llama_context_params._fields_):
                    cparams.kv_unified = True
                self._ctx = lib.llama_init_from_model(self._model, cparams)
                if not self._ctx:
                    raise ValueError("could not create the llama.cpp context")
                self._mem = lib.llama_get_memory(self._ctx)
                self._batch = lib.llama_batch_init(self.n_batch, 0, 1)
                self.n_ctx = int(lib.llama_n_ctx(self._ctx))
                vocab = Vocab(lib, str(self.model_path))
            finally:
                if not verbose:
                    log.setLevel(logging.ERROR)
        except BaseException as e:  # noqa: BLE001 - handed to the constructor
            self._free_llama()
            loaded.set_exception(e)
            return
        loaded.set_result(vocab)
        try:
            self._serve()
        finally:
            self._free_llama()

    def _free_llama(self) -> None:
        lib = self._lib
        if self._batch is not None:
            lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            lib.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            lib.llama_model_free(self._model)
            self._model = None

    def _serve(self) -> None:
        slots = self._slots
        while True:
            with self._cond:
                t_wait = time.perf_counter()
                deadline = time.monotonic() + self._gather_s() if self._expect else 0.0
                while True:
                    work = any(s.ops or self._pending(s) for s in slots)
                    if not work and self._stopping:
                        return
                    if work:
                        missing = any(not slots[i].ops and not self._pending(slots[i])
                                      and slots[i].live for i in self._expect)
                        left = deadline - time.monotonic()
                        if not missing or left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if self._expect:
                    self._stats["gather_wait_s"] += time.perf_counter() - t_wait
                self._expect = set()
            t0 = time.perf_counter()
            try:
                self._iterate()
            except Exception as e:  # noqa: BLE001 - a bug here must not leave callers hanging
                self._fail_all(e)
            finally:
                with self._cond:
                    self._stats["busy_s"] += time.perf_counter() - t0

    def _fail_all(self, exc: Exception) -> None:
        """The worker itself failed: every queued operation gets the error, every sequence
        waits for its next operation (its context is as the failure left it)."""
        err = RuntimeError(f"the batched engine's worker failed: {describe(exc)}")
        err.__cause__ = exc
        for slot in self._slots:
            slot.suspended = True
            slot.fresh = False
            while slot.ops:
                self._finish(slot, slot.ops.popleft(), err)
            if slot.stale is None:
                with contextlib.suppress(Exception):  # cells past what the sequence knows of
                    self._lib.llama_memory_seq_rm(self._mem, slot.id, slot.n_kv, -1)
                    with self._cond:
                        self._cells.truncate(slot.id, slot.n_kv)

    def _gather_s(self) -> float:
        if self.gather_s is not None:
            return self.gather_s
        return min(0.03, 0.25 * self._last_decode_s)

    @staticmethod
    def _pending(slot: _Slot) -> bool:
        """``slot`` has tokens to evaluate now (an evicted, idle one waits for its next op)."""
        return not slot.suspended and slot.n_kv < len(slot.tokens)

    def _iterate(self) -> None:
        demands: list[Demand] = []
        for slot in self._slots:
            if slot.ops:
                self._advance(slot)
            if self._pending(slot):
                n = slot.cuts[0] - slot.n_kv
                step = n == 1 and slot.cuts[0] == len(slot.tokens)
                arrival = slot.ops[0].arrival if slot.ops else -1
                demands.append(Demand(slot.id, n, step, arrival, slot.boosted, slot.service))
        if not demands:
            return
        alloc = pack(demands, n_batch=self.n_batch, prefill_chunk=self.prefill_chunk,
                     policy=self.policy)
        alloc = self._make_room(alloc)
        if alloc:
            self._decode(alloc)

    def _advance(self, slot: _Slot) -> None:
        """Start the operations at the head of ``slot``'s queue and deliver those that are
        complete; stop at the first that must wait for an evaluation."""
        while slot.ops:
            op = slot.ops[0]
            try:
                if not op.started:
                    op.started = True
                    self._start(slot, op)
                if not op.done:
                    if op.kind == "step":
                        if slot.fresh:
                            self._sample(slot, op)
                    elif slot.n_kv >= op.target:
                        op.done = True
            except BaseException as e:  # noqa: BLE001 - delivered to the caller
                slot.ops.popleft()
                self._finish(slot, op, e)
                continue
            if not op.done:
                return
            slot.ops.popleft()
            self._finish(slot, op, None)

    def _finish(self, slot: _Slot, op: _Op, exc: BaseException | None) -> None:
        slot.idle_since = time.monotonic()
        try:
            op.loop.call_soon_threadsafe(_resolve, op.fut, op.result, exc)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _fits(self, slot: _Slot, n_new: int) -> None:
        limit = min(self.n_ctx, self.kv_budget_tokens)
        if len(slot.tokens) + n_new > limit:
            raise ContextFullError(
                f"{n_new} tokens do not fit: the sequence holds {len(slot.tokens)} of "
                f"{limit} (n_ctx={self.n_ctx}, kv_budget_tokens={self.kv_budget_tokens})"
            )

    def _rm(self, slot: _Slot, keep: int) -> None:
        """Remove ``slot``'s cells from position ``keep`` on."""
        if self._cells.n(slot.id) > keep:
            self._lib.llama_memory_seq_rm(self._mem, slot.id, keep, -1)
            with self._cond:
                self._cells.truncate(slot.id, keep)

    def _drop_stale(self, slot: _Slot) -> None:
        if slot.stale is not None:
            slot.stale = None
            self._rm(slot, 0)

    def _start(self, slot: _Slot, op: _Op) -> None:
        """The part of ``op`` that needs no evaluation (validation, token bookkeeping, cell
        removal); sets ``op.done`` when nothing else is needed."""
        kind = op.kind
        if kind == "close":
            self._close_slot(slot)
            op.done = True
            return
        if op.at - slot.idle_since >= _RESUME_AFTER_S or kind == "append":
            slot.boosted = True  # back from waiting (or an interrupt): served first
        if kind == "prefill":
            self._start_prefill(slot, op)
            return
        self._drop_stale(slot)
        if slot.error is not None:
            err, slot.error = slot.error, None
            raise err
        if slot.suspended:
            self._resume(slot)
        if kind == "rollback":
            self._rollback(slot, op.arg)
            op.done = True
        elif kind == "append":
            tokens: list[int] = op.arg
            self._fits(slot, len(tokens))
            if tokens:
                op.undo = len(slot.tokens)
                slot.tokens.extend(tokens)
                slot.fresh = False
                slot.cuts.append(len(slot.tokens))
            op.target = len(slot.tokens)
            op.done = slot.n_kv >= op.target
        else:  # step
            if not slot.tokens:
                raise RuntimeError("step() on an empty context: prefill first")
            self._fits(slot, 1)
            if not slot.fresh and not self._pending(slot):  # logits lost: evaluate again
                self._truncate(slot, len(slot.tokens))

    def _sample(self, slot: _Slot, op: _Op) -> None:
        tok = pick_token(slot.logits, op.arg, temperature=self.temperature, top_k=self.top_k,
                         top_p=self.top_p, rng=slot.rng)
        slot.tokens.append(tok)
        slot.fresh = False
        slot.cuts.append(len(slot.tokens))
        slot.boosted = False
        op.result = tok
        op.done = True
        with self._cond:
            self._stats["steps"] += 1

    def _start_prefill(self, slot: _Slot, op: _Op) -> None:
        tokens, reuse = op.arg
        limit = min(self.n_ctx, self.kv_budget_tokens)
        if len(tokens) > limit:
            raise ContextFullError(
                f"{len(tokens)} tokens exceed {limit} (n_ctx={self.n_ctx}, "
                f"kv_budget_tokens={self.kv_budget_tokens})")
        slot.recompute_until = slot.recomputing = 0
        slot.suspended = False
        slot.error = None
        if reuse and tokens:
            keep = self._share_prefix(slot, tokens, len(tokens) - 1, own=True)
        else:
            keep = 0
            slot.stale = None
            self._rm(slot, 0)
            slot.n_kv = 0
        slot.tokens = list(tokens)
        slot.prompt_len = len(tokens)
        slot.fresh = False
        slot.cuts = [len(tokens)] if slot.n_kv < len(tokens) else []
        with self._cond:
            self._stats["prefills"] += 1
            self._stats["cached_tokens"] += keep
        op.result = keep
        op.target = len(tokens)
        op.done = not tokens

    def _share_prefix(self, slot: _Slot, tokens: list[int], limit: int, *, own: bool) -> int:
        """Give ``slot`` the longest cached prefix of ``tokens`` (at most ``limit`` tokens):
        its own cached tokens (``own``) or a copy of another sequence's cells. Sets
        ``slot.n_kv`` and returns it."""
        mine = slot.cached() if own else []
        best, src = _common(mine, tokens, limit), -1
        for other in self._slots:
            if other is slot:
                continue
            n = _common(other.cached(), tokens, limit)
            if n > best:
                best, src = n, other.id
        slot.stale = None
        if src < 0:  # keep our own prefix
            self._rm(slot, best)
        else:
            self._rm(slot, 0)
            self._lib.llama_memory_seq_cp(self._mem, src, slot.id, 0, best)
            with self._cond:
                self._cells.copy(src, slot.id, best)
        slot.n_kv = best
        return best

    def _resume(self, slot: _Slot) -> None:
        """An evicted sequence is used again: copy what another sequence holds of its prefix;
        the rest is recomputed (one evaluation unit)."""
        slot.suspended = False
        if slot.tokens and slot.n_kv == 0:
            self._share_prefix(slot, slot.tokens, len(slot.tokens) - 1, own=False)
        slot.cuts = [len(slot.tokens)] if slot.n_kv < len(slot.tokens) else []

    def _truncate(self, slot: _Slot, n: int) -> None:
        """Keep ``n`` tokens (``n`` >= 1) and evaluate token ``n-1`` again (fresh logits)."""
        del slot.tokens[n:]
        slot.fresh = False
        keep = min(slot.n_kv, n - 1)
        self._rm(slot, keep)
        slot.n_kv = keep
        slot.cuts = [c for c in slot.cuts if keep < c < n] + [n]
        if slot.recompute_until:
            slot.recompute_until = min(slot.recompute_until, n - 1)
            if slot.recompute_until <= slot.n_kv:
                self._end_recompute(slot)

    def _rollback(self, slot: _Slot, n: int) -> None:
        if not 0 <= n <= len(slot.tokens):
            raise ValueError(
                f"cannot roll back to {n} tokens: the context holds {len(slot.tokens)}")
        if n == len(slot.tokens) and (slot.fresh or self._pending(slot)):
            return  # nothing removed, and the next step's logits are (being) computed
        if n == 0:
            slot.tokens = []
            slot.fresh = False
            self._rm(slot, 0)
            slot.n_kv = 0
            slot.cuts = []
            self._end_recompute(slot)
            return
        self._truncate(slot, n)

    def _close_slot(self, slot: _Slot) -> None:
        slot.live = False
        if self.retain_closed and slot.stale is None and slot.n_kv:
            # Only its prompt: what a later session may share (a system prompt). What it
            # generated and was told is its own; keeping it would only lengthen the range of
            # cells every decode attends over (masked, but computed: a unified cache).
            keep = min(slot.n_kv, slot.prompt_len)
            self._rm(slot, keep)
            slot.stale = slot.tokens[:keep] if keep else None
        elif slot.stale is None:
            self._rm(slot, 0)
        slot.tokens = []
        slot.n_kv = 0
        slot.cuts = []
        slot.fresh = slot.suspended = False
        slot.error = None
        slot.recompute_until = slot.recomputing = 0
        slot.idle_since = time.monotonic()

    def _end_recompute(self, slot: _Slot) -> None:
        if slot.recomputing:
            with self._cond:
                slot.events.append(KvEvent("recomputed", slot.recomputing, time.monotonic()))
            slot.recomputing = 0
        slot.recompute_until = 0

    def _evict(self, slot: _Slot) -> None:
        n = self._cells.n(slot.id)
        if slot.stale is not None:
            slot.stale = None
            self._rm(slot, 0)
            with self._cond:
                self._stats["dropped_cache_tokens"] += n
            return
        evicted = slot.n_kv
        self._rm(slot, 0)
        slot.n_kv = 0
        slot.cuts = [len(slot.tokens)] if slot.tokens else []
        slot.suspended = not slot.ops  # idle: recompute when next used; else at once
        slot.recompute_until = max(slot.recompute_until, evicted)
        slot.evictions += 1
        with self._cond:
            self._stats["evictions"] += 1
            slot.events.append(KvEvent("evicted", evicted, time.monotonic()))

    def _make_room(self, alloc: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Evict (retained caches, then idle sequences, longest idle first), else shrink the
        batch, until its new cells fit into the budget."""
        cells, budget = self._cells, self.kv_budget_tokens

        def excess() -> int:
            return cells.used + sum(n for _, n in alloc) - budget

        if excess() <= 0:
            return alloc
        busy = {s for s, _ in alloc}
        idle = [Idle(s.id, s.idle_since, cells.n(s.id), retained=s.stale is not None)
                for s in self._slots
                if not s.ops and not self._pending(s) and s.id not in busy]
        order = eviction_order(idle)
        for rounds in (0, 1):  # first those whose cells are their own, then any
            for i in order:
                if excess() <= 0:
                    return alloc
                if cells.n(i) and (rounds or cells.exclusive(i)):
                    self._evict(self._slots[i])
        while excess() > 0 and len(alloc) > 1:  # fewer tokens this time
            seq, n = alloc[-1]
            cut = excess()
            alloc = alloc[:-1] + ([(seq, n - cut)] if n > cut else [])
        others = [s for s in self._slots if s.id != alloc[0][0] and cells.n(s.id)]
        others.sort(key=lambda s: -cells.n(s.id))
        for s in others:  # sequences waiting for their turn: they recompute later
            if excess() <= 0:
                break
            self._evict(s)
        if excess() > 0:
            seq, n = alloc[0]
            room = n - excess()
            if room <= 0:
                slot = self._slots[seq]
                err = ContextFullError(f"the KV cache is full ({cells.used} of {budget} cells)")
                self._fail(slot, err)
                return []
            alloc = [(seq, room)]
        return alloc

    def _fail(self, slot: _Slot, err: BaseException) -> None:
        """``slot``'s pending tokens could not be evaluated: fail the operation waiting for
        them (an append is undone), or the sequence's next operation. The tokens stay pending
        (the context still holds them); they are tried again when the next operation comes."""
        self._lib.llama_memory_seq_rm(self._mem, slot.id, slot.n_kv, -1)  # partial results
        slot.fresh = False
        slot.suspended = True
        op = slot.ops[0] if slot.ops and slot.ops[0].started else None
        if op is None:
            slot.error = err
            return
        slot.ops.popleft()
        if op.kind == "append" and op.undo is not None:
            del slot.tokens[max(op.undo, slot.n_kv):]
            slot.cuts = [c for c in slot.cuts if c < len(slot.tokens)]
            if slot.n_kv < len(slot.tokens):
                slot.cuts.append(len(slot.tokens))
        self._finish(slot, op, err)

    def _decode(self, alloc: list[tuple[int, int]]) -> None:
        lib, batch, slots = self._lib, self._batch, self._slots
        out: dict[int, int] = {}
        i = 0
        tok_arr, pos_arr, nseq_arr = batch.token, batch.pos, batch.n_seq_id
        seq_arr, logit_arr = batch.seq_id, batch.logits
        for seq, n in alloc:
            slot = slots[seq]
            start = slot.n_kv
            for j, t in enumerate(slot.tokens[start : start + n]):
                tok_arr[i] = t
                pos_arr[i] = start + j
                nseq_arr[i] = 1
                seq_arr[i][0] = seq
                logit_arr[i] = False
                i += 1
            if start + n == len(slot.tokens):
                logit_arr[i - 1] = True
                out[seq] = i - 1
        batch.n_tokens = i
        t0 = time.perf_counter()
        rc = lib.llama_decode(self._ctx, batch)
        dt = time.perf_counter() - t0
        self._last_decode_s = dt
        if rc != 0:
            err = (ContextFullError(f"llama_decode found no room in the KV cache ({self.n_ctx})")
                   if rc == 1 else RuntimeError(f"llama_decode failed ({rc})"))
            for seq, _ in alloc:
                self._fail(slots[seq], err)
            return
        step_rows = sum(1 for seq, n in alloc if n == 1 and seq in out)
        with self._cond:
            st = self._stats
            st["decode_calls"] += 1
            st["tokens_decoded"] += i
            st["step_rows"] += step_rows
            st["decode_s"] += dt
            b = _bucket(i)
            self._hist[b] = self._hist.get(b, 0) + 1
            for seq, n in alloc:
                self._cells.extend(seq, n)
        np = self._np
        for seq, n in alloc:
            slot = slots[seq]
            start = slot.n_kv
            slot.n_kv += n
            slot.service += n
            while slot.cuts and slot.cuts[0] <= slot.n_kv:
                slot.cuts.pop(0)
            if slot.recompute_until:
                redo = max(0, min(start + n, slot.recompute_until) - start)
                if redo:
                    slot.recomputing += redo
                    slot.recomputed += redo
                    with self._cond:
                        self._stats["recomputed_tokens"] += redo
                if slot.n_kv >= slot.recompute_until:
                    self._end_recompute(slot)
            if seq in out:
                ptr = lib.llama_get_logits_ith(self._ctx, out[seq])
                if not ptr:
                    self._fail(slot, RuntimeError("llama.cpp returned no logits"))
                    continue
                view = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
                if slot.logits is None:
                    slot.logits = view.copy()
                else:
                    np.copyto(slot.logits, view)
                slot.fresh = True
                if n == 1:
                    self._expect.add(seq)
            if slot.ops:
                self._advance(slot)

    # -- closing -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Free the model and end the worker (after the operations already queued); pending
        acquires fail with :class:`EngineClosedError`. Idempotent."""
        self._stop()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        self._vocab.close()

    def close(self) -> None:
        """Synchronous :meth:`aclose` (blocks until queued operations are done)."""
        self._stop()
        self._thread.join()
        self._vocab.close()

    def _stop(self) -> None:
        self._closed = True
        with self._cond:
            self._stopping = True
            self._cond.notify()
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(EngineClosedError("the engine is closed"))

    async def __aenter__(self) -> BatchedLlamaEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("the engine is closed")

class BatchedSequence:
    """One context of a :class:`BatchedLlamaEngine`: an :class:`~asynclm.engines.base.Engine`
    whose steps are batched with the other sequences'. Get one with
    :meth:`BatchedLlamaEngine.acquire`; :meth:`aclose` gives it back (idempotent; the engine
    stays open). Also a :class:`~asynclm.engines.base.KvEvents` (capability ``kv_events``)."""

    capabilities = Capabilities(kv_events=True)

    def __init__(self, engine: BatchedLlamaEngine, slot: _Slot) -> None:
        self._engine = engine
        self._slot = slot
        self._closed = False
        self._closing: asyncio.Future[Any] | None = None
        self.n_vocab = engine.n_vocab
        self.n_ctx = engine.n_ctx

    @property
    def engine(self) -> BatchedLlamaEngine:
        return self._engine

    @property
    def seq_id(self) -> int:
        """The llama.cpp sequence id (reused by another sequence once this one is closed)."""
        return self._slot.id

    @property
    def chat_template(self) -> str:
        """The model's chat template (a session picks its default dialect from it)."""
        return self._engine.chat_template

    @property
    def model_path(self) -> Path:
        """The model's file (a bundled model's registry entry may name its dialect)."""
        return self._engine.model_path

    @property
    def n_tokens(self) -> int:
        return 0 if self._closed else len(self._slot.tokens)

    @property
    def tokens(self) -> list[int]:
        """A copy of the token ids in the context."""
        return [] if self._closed else list(self._slot.tokens)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def evictions(self) -> int:
        """Times this context's KV cache was evicted."""
        return self._slot.evictions

    @property
    def recomputed_tokens(self) -> int:
        """Tokens evaluated again after evictions."""
        return self._slot.recomputed

    def take_kv_events(self) -> Sequence[KvEvent]:
        """Evictions and recomputations since the previous call, oldest first."""
        with self._engine._cond:
            events, self._slot.events = self._slot.events, []
        return events

    def reseed(self, seed: int) -> None:
        """Restart this sequence's sampling generator (used when ``temperature`` > 0)."""
        self._slot.rng = self._engine._np.random.default_rng(seed)

    # -- Engine ------------------------------------------------------------------------------

    def _op(self, kind: OpKind, arg: Any) -> asyncio.Future[Any]:
        if self._closed:
            raise EngineClosedError("the sequence is closed")
        return self._engine._submit(self._slot, kind, arg)

    async def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True) -> int:
        """Replace the context with ``tokens`` and process them; returns how many came from
        the cache (this sequence's own, or a prefix another sequence holds). With
        ``reuse_prefix`` false every token is processed again."""
        result: int = await self._op("prefill", ([int(t) for t in tokens], reuse_prefix))
        return result

    async def step(self, *, ban: Collection[int] = ()) -> int:
        """Sample one token (never one in ``ban``), append it to the context, return it."""
        if ban:
            ids = frozenset(int(t) for t in ban)
            if min(ids) < 0 or max(ids) >= self.n_vocab:
                raise ValueError(f"banned ids must be in [0, {self.n_vocab})")
        else:
            ids = frozenset()
        result: int = await self._op("step", ids)
        return result

    async def append(self, tokens: Sequence[int]) -> None:
        """Inject ``tokens`` after the context (only the new tokens are evaluated)."""
        await self._op("append", [int(t) for t in tokens])

    async def rollback(self, n_tokens: int) -> None:
        """Keep the first ``n_tokens`` tokens; the next step continues from there."""
        await self._op("rollback", int(n_tokens))

    async def aclose(self) -> None:
        """Give the sequence back to the engine (after its queued operations): its slot is
        free for the next :meth:`~BatchedLlamaEngine.acquire`, its cells stay as a cache other
        prefills may share until space is needed (unless the engine's ``retain_closed`` is
        off). Idempotent; a no-op once the engine is closed."""
        if self._closing is None:
            self._closed = True
            engine, slot = self._engine, self._slot
            try:
                fut = engine._submit(slot, "close", None)
            except EngineClosedError:
                return
            fut.add_done_callback(lambda _f: engine._release(slot))
            self._closing = fut
        await asyncio.shield(self._closing)

    async def __aenter__(self) -> BatchedSequence:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- vocabulary ----------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self._engine.tokenize(text, special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._engine.detokenize(tokens)

    def is_eos(self, token: int) -> bool:
        return self._engine.is_eos(token)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return self._engine.render_chat(messages)

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return self._engine.tokenize_chat(messages)

    def added_tokens(self) -> dict[int, str]:
        return self._engine.added_tokens()

    @property
    def control_ids(self) -> frozenset[int]:
        return self._engine.control_ids


def _common(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n, top = 0, min(len(a), len(b), limit)
    while n < top and a[n] == b[n]:
        n += 1
    return n


def _bucket(n: int) -> int:
    """Batch sizes by powers of two: 1, 2, 3-4 (4), 5-8 (8), ..."""
    b = 1
    while b < n:
        b *= 2
    return b


def _bucket_name(b: int) -> str:
    return str(b) if b <= 2 else f"{b // 2 + 1}-{b}"


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)
