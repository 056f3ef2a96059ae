"""The server requests of a run, for engines with the request-log capability
(``capabilities.request_log``, :class:`~asynclm.engines.base.RequestLog`).

A step that sent a request (a resume) shows its time to first token as a ``reprefill`` phase;
at the end every request becomes a ``server.request`` mark (final figures) and the counters get
the totals: requests, prompt tokens sent, and those the server reported cached.
"""

from __future__ import annotations

from asynclm.engines.base import RequestLog, ServerRequest
from asynclm.runtime.observe import Mark, Phase


class RequestAccount:
    """The requests of one run, taken from ``log`` as they are sent."""

    __slots__ = ("_log", "requests")

    def __init__(self, log: RequestLog) -> None:
        self._log = log
        self.requests: list[ServerRequest] = []

    def take(self) -> None:
        """Collect the requests sent since the last look."""
        self.requests += self._log.take_requests()

    def step(self, t: float, t1: float) -> Phase | None:
        """After a step from ``t`` to ``t1``: if it sent a request whose first token came in
        that interval, its time to first token as a ``reprefill`` phase (the decode phase then
        starts at ``phase.end``)."""
        reqs = self._log.take_requests()
        if not reqs:
            return None
        self.requests += reqs
        r = reqs[-1]
        if r.first_at is None or not t <= r.first_at <= t1:
            return None
        return Phase("reprefill", f"server.{r.reason}", t, r.first_at,
                     {"tokens": r.prompt_tokens, "cached": r.cached_tokens})

    def finish(self, counters: dict[str, int]) -> list[Mark]:
        """Totals into ``counters``; one ``server.request`` mark per request of the run."""
        self.take()
        cached = [r.cached_tokens for r in self.requests if r.cached_tokens is not None]
        counters["server_requests"] = len(self.requests)
        counters["server_prompt_tokens"] = sum(r.prompt_tokens for r in self.requests)
        if cached:
            counters["server_cached_tokens"] = sum(cached)
        return [
            Mark("server.request", r.sent_at, {
                "reason": r.reason, "mode": r.mode, "prompt_tokens": r.prompt_tokens,
                "cached_tokens": r.cached_tokens, "received": r.received, "finish": r.finish,
                "retries": r.retries,
                "first_s": None if r.first_at is None else r.first_at - r.sent_at,
            })
            for r in self.requests
        ]
