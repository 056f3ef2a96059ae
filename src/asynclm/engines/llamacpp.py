"""The in-process llama.cpp engine (llama-cpp-python), with true KV-cache injection.

One engine = one ``llama_cpp.Llama`` context owned by one worker thread. Every coroutine submits a
job to the worker's queue and awaits a future the worker resolves through
``loop.call_soon_threadsafe``, so the event loop never blocks on the model, and the ``Llama``
object is only ever touched by its worker. Jobs run in submission order. A cancelled coroutine
does not stop its job: the job runs to completion in the worker (the context stays consistent,
``n_tokens``/``tokens`` say what it holds) and its result is dropped.

Tokenization, detokenization and chat rendering run in the caller's thread on a separate
vocabulary-only model handle (read-only, no weights), so they never wait behind a long prefill.

Decoding is done here, not by llama.cpp's sampler: ``step`` reads the last position's logits as a
numpy view (no copy in the greedy path), masks banned ids, picks a token (argmax at temperature 0;
else temperature, top-k, top-p with a seeded ``numpy.random.Generator``) and evaluates it.
``append`` is one more ``Llama.eval`` on the same context: the KV cache is extended and only the
new tokens are computed. ``rollback(n)`` truncates to ``n`` tokens and re-evaluates token ``n-1``
so the next step sees fresh logits.

Requires the ``llama`` extra: ``pip install 'asynclm[llama]'``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future as ConcurrentFuture
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asynclm import models
from asynclm.engines._llama import Vocab, import_llama
from asynclm.engines._vocabulary import VocabularySide
from asynclm.engines.base import Capabilities
from asynclm.errors import ContextFullError, EngineClosedError, LlamaCppNotInstalled

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ContextFullError",
    "EngineClosedError",
    "LlamaCppEngine",
    "LlamaCppNotInstalled",
]


def _default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return n if n <= 4 else n // 2  # past 4, assume SMT siblings: they slow llama.cpp down


class LlamaCppEngine(VocabularySide):
    """A GGUF model in this process, decoded token by token, with real interrupt injection.

    >>> engine = LlamaCppEngine.from_name("qwen2.5-coder-0.5b", n_threads=2)
    >>> prompt = engine.tokenize_chat([ChatMessage("user", "Hi")])
    >>> await engine.prefill(prompt); tok = await engine.step()
    """

    capabilities = Capabilities()

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_batch: int = 512,
        seed: int = 0,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        verbose: bool = False,
        **llama_kwargs: Any,
    ) -> None:
        """Load ``model_path`` (blocks for the load: about 0.3–1 s for the bundled models; from
        async code use ``await asyncio.to_thread(LlamaCppEngine, path)``).

        ``temperature`` 0 means greedy (argmax). ``top_k`` 0 and ``top_p`` 1 disable those
        filters. Extra keyword arguments go to ``llama_cpp.Llama``.
        """
        check_sampling(temperature, top_p)
        self._lib = import_llama()
        import numpy

        self._np = numpy
        self.model_path = model_file(model_path)
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        self._rng = numpy.random.default_rng(seed)
        self._tokens: list[int] = []
        self._fresh = False  # the context's last logits belong to position len(_tokens)-1
        self._closed = False
        self._llm: Any = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.n_ctx: int = n_ctx  # the worker sets the context's actual size after loading
        threads = n_threads or _default_threads()
        params = dict(
            model_path=str(self.model_path),
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            seed=seed,
            verbose=verbose,
            logits_all=False,
        )
        params.update(llama_kwargs)
        loaded: ConcurrentFuture[Vocab] = ConcurrentFuture()
        self._thread = threading.Thread(
            target=self._run, args=(params, loaded), name=f"llamacpp:{self.model_path.name}",
            daemon=True,
        )  # fmt: skip
        self._thread.start()
        try:
            self._vocab = loaded.result()
        except BaseException:
            self._thread.join()
            self._closed = True
            raise
        self._init_vocabulary(self._lib, self._vocab)
        self.n_threads = threads

    @classmethod
    def from_name(cls, name: str | None = None, **kwargs: Any) -> LlamaCppEngine:
        """A bundled model by registry name (see :mod:`asynclm.models`), pulled if needed."""
        return cls(models.model_path(name or models.DEFAULT_MODEL), **kwargs)

    # -- worker thread ------------------------------------------------------------------------

    def _run(self, params: dict[str, Any], loaded: ConcurrentFuture[Vocab]) -> None:
        lib = self._lib
        try:
            # Both loads in this one thread, one after the other: llama-cpp-python silences
            # output by swapping the process-wide stdout/stderr, which must not interleave.
            self._llm = lib.Llama(**params)
            self.n_ctx = self._llm.n_ctx()
            # llama-cpp-python maps llama.cpp's log levels wrongly (warnings print as errors)
            log = logging.getLogger("llama-cpp-python")
            level = log.level
            if not params["verbose"]:
                log.setLevel(logging.CRITICAL + 1)
            try:
                vocab = Vocab(lib, params["model_path"])
            finally:
                log.setLevel(level)
        except BaseException as e:  # noqa: BLE001 - handed to the constructor
            if self._llm is not None:
                self._llm.close()
                self._llm = None
            loaded.set_exception(e)
            return
        loaded.set_result(vocab)
        while True:
            job = self._queue.get()
            if job is None:
                break
            fn, args, loop, fut = job
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - delivered to the awaiting coroutine
                self._deliver(loop, fut, None, e)
            else:
                self._deliver(loop, fut, result, None)
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    @staticmethod
    def _deliver(loop: Any, fut: Any, result: Any, exc: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(_resolve, fut, result, exc)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _eval(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` after the current context (worker thread)."""
        llm = self._llm
        try:
            llm.eval(tokens)
        except BaseException:
            # keep our copy equal to what the context holds; logits are unknown now
            n = llm.n_tokens
            self._tokens = [int(t) for t in llm.input_ids[:n]]
            self._fresh = False
            raise
        self._tokens.extend(tokens)
        self._fresh = True

    def _check_fits(self, n_new: int) -> None:
        if len(self._tokens) + n_new > self.n_ctx:
            raise ContextFullError(
                f"{n_new} tokens do not fit: the context holds {len(self._tokens)} of "
                f"n_ctx={self.n_ctx}"
            )

    def _do_prefill(self, tokens: list[int], reuse_prefix: bool) -> int:
        if len(tokens) > self.n_ctx:
            raise ContextFullError(f"{len(tokens)} tokens exceed n_ctx={self.n_ctx}")
        keep = 0
        if reuse_prefix:  # keep the KV cache of the longest common prefix (minus one token,
            old = self._tokens  # so that the last prompt token is evaluated: fresh logits)
            limit = min(len(old), len(tokens) - 1)
            while keep < limit and old[keep] == tokens[keep]:
                keep += 1
        if keep:
            del self._tokens[keep:]
            self._llm.n_tokens = keep
        else:
            self._llm.reset()
            self._tokens = []
        self._fresh = False
        if tokens[keep:]:
            self._eval(tokens[keep:])
        return keep

    def _do_append(self, tokens: list[int]) -> None:
        self._check_fits(len(tokens))
        if tokens:
            self._eval(tokens)

    def _do_rollback(self, n: int) -> None:
        if not 0 <= n <= len(self._tokens):
            raise ValueError(f"cannot roll back to {n} tokens: the context holds {len(self._tokens)}")
        if n == len(self._tokens) and self._fresh:
            return
        llm = self._llm
        if n == 0:
            llm.reset()
            self._tokens = []
            self._fresh = False
            return
        last = self._tokens[n - 1]
        del self._tokens[n - 1 :]
        llm.n_tokens = n - 1  # the next eval drops the KV cache past n-1 ...
        self._fresh = False
        self._eval([last])  # ... and recomputes position n-1: fresh logits for the next step

    def _do_step(self, ban: frozenset[int]) -> int:
        self._check_fits(1)
        if not self._fresh:
            if not self._tokens:
                raise RuntimeError("step() on an empty context: prefill first")
            self._do_rollback(len(self._tokens))  # e.g. after a failed eval: recompute logits
        np = self._np
        ptr = self._lib.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        if not ptr:
            raise RuntimeError("llama.cpp returned no logits for the last position")
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))  # a view, no copy
        tok = pick_token(logits, ban, temperature=self.temperature, top_k=self.top_k,
                         top_p=self.top_p, rng=self._rng)
        self._eval([tok])
        return tok

    # -- async API ----------------------------------------------------------------------------

    async def _submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise EngineClosedError("the engine is closed")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((fn, args, loop, fut))
        return await fut

    async def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True) -> int:
        """Replace the context with ``tokens`` and process them; with ``reuse_prefix`` the KV
        cache of the prefix shared with the current context is kept (a system prompt is
        processed once per engine), otherwise every token is processed again."""
        return await self._submit(self._do_prefill, [int(t) for t in tokens], reuse_prefix)

    async def step(self, *, ban: Collection[int] = ()) -> int:
        """Sample one token (never one in ``ban``), append it to the context, return it."""
        if ban:
            ids = frozenset(int(t) for t in ban)
            if min(ids) < 0 or max(ids) >= self.n_vocab:
                raise ValueError(f"banned ids must be in [0, {self.n_vocab})")
        else:
            ids = frozenset()
        return await self._submit(self._do_step, ids)

    async def append(self, tokens: Sequence[int]) -> None:
        """Inject ``tokens`` after the context (one forward pass over the new tokens only)."""
        await self._submit(self._do_append, [int(t) for t in tokens])

    async def rollback(self, n_tokens: int) -> None:
        """Keep the first ``n_tokens`` tokens; the next step continues from there."""
        await self._submit(self._do_rollback, int(n_tokens))

    async def aclose(self) -> None:
        """Free the model and end the worker (after the jobs already queued). Idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        self._vocab.close()

    def close(self) -> None:
        """Synchronous :meth:`aclose` (blocks until queued jobs are done)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        self._vocab.close()

    def reseed(self, seed: int) -> None:
        """Restart the sampling random generator (used when ``temperature`` > 0). Call it
        between steps, not while one is in flight."""
        self._rng = self._np.random.default_rng(seed)

    async def __aenter__(self) -> LlamaCppEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- synchronous helpers (caller's thread; vocabulary only) ---------------------------------

    @property
    def n_tokens(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[int]:
        """A copy of the token ids in the context."""
        return list(self._tokens)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        self._check_vocab()


def check_sampling(temperature: float, top_p: float) -> None:
    """Raise ValueError for sampling parameters no in-process engine accepts."""
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    if not 0 < top_p <= 1:
        raise ValueError("top_p must be in (0, 1]")


def model_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; FileNotFoundError unless it is a file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    return p


def pick_token(
    logits: np.ndarray, ban: Collection[int], *, temperature: float, top_k: int, top_p: float,
    rng: np.random.Generator,
) -> int:
    """The token to emit from ``logits`` (a row of the vocabulary's size; never modified):
    never one in ``ban``; the argmax at ``temperature`` 0, else sampled with ``rng`` after the
    temperature, top-k (0: off) and top-p (1: off) filters. Raises ValueError when every token
    is banned. Shared by every in-process llama.cpp engine."""
    import numpy as np

    if temperature == 0.0:
        tok = int(logits.argmax())
        if ban and tok in ban:
            masked = logits.copy()
            masked[list(ban)] = -np.inf
            tok = int(masked.argmax())
            if masked[tok] == -np.inf:
                raise ValueError("every token is banned")
        return tok
    x = logits.copy()
    if ban:
        x[list(ban)] = -np.inf
    n = x.shape[0]
    k = top_k if 0 < top_k < n else n
    if k < n:
        idx = np.argpartition(x, n - k)[n - k :]
        vals = x[idx]
    else:
        idx = np.arange(n)
        vals = x
    order = np.argsort(vals)[::-1]
    idx, vals = idx[order], vals[order]
    if vals[0] == -np.inf:
        raise ValueError("every token is banned")
    p = np.exp((vals - vals[0]) / temperature)
    p /= p.sum()
    if top_p < 1.0:
        cut = int(np.searchsorted(np.cumsum(p), top_p)) + 1
        idx, p = idx[:cut], p[:cut] / p[:cut].sum()
    return int(idx[rng.choice(len(p), p=p)])


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.cancelled():
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)
