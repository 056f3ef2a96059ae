"""Server settings: where it binds, who may call it, and how big things may get."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from asynclm.errors import AsyncLMError


class UnsafeBindError(AsyncLMError, ValueError):
    """Binding to a non-loopback address without a token."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def parse_host(value: str, default_port: int | None = None) -> tuple[str, int | None] | None:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as ``(name, port)``: the name
    lower-cased, an IP address in its canonical form (``[0::1]`` is ``::1``), the port
    ``default_port`` when absent. ``None`` for anything else (a bare IPv6 address, a bad port,
    characters no host name has)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
        try:
            name = ipaddress.IPv6Address(name).compressed
        except ValueError:
            return None
    else:
        name, sep, port_text = value.partition(":")
        if not sep:
            port_text = None
        try:
            name = ipaddress.IPv4Address(name).compressed
        except ValueError:
            name = name.rstrip(".")
            if not _NAME.fullmatch(name):
                return None
    if port_text is None:
        return name, default_port
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        return None
    port = int(port_text)
    return (name, port) if 0 < port < 65536 else None


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Defaults are safe: loopback only, bounded sizes. ``token``: required as
    ``Authorization: Bearer <token>`` when set, and it must be set to bind to any other
    address (the web page trades it for an event-stream cookie: a token never travels in a
    URL). ``allowed_hosts``: ``Host`` header values accepted besides the defaults (the bound
    host, ``localhost``, ``127.0.0.1``, ``[::1]`` and the address a client connected to, all on
    the bound port): ``name`` (any port), ``name:port``, or ``*`` for every Host; a request
    with any other Host is refused (DNS rebinding). A state-changing request with an
    ``Origin`` must come from the request's own host or an allowed one. ``tool_modules``:
    Python modules a request may name as its tool set (besides ``demo`` and ``none``): a
    request can never import anything else. ``mcp_servers``: the MCP servers (``(label, url)``,
    streamable HTTP) that ``/v1/responses`` requests may use as ``mcp`` tools; a request naming
    any other URL is refused: the server never connects to a URL a request chose.

    Real models (see :mod:`asynclm.server.engines`): ``max_batch`` sessions per model decode
    at once (the batched engine's sequences, or requests in flight to ``engine_url``); up to
    ``max_queue`` more wait for a slot, in order, and past that a new session is refused with
    429. ``llama_threads``: the batched engine's llama.cpp threads (``None``: its default);
    ``kv_budget``: its KV cache budget in tokens, shared by its sequences (``None``: its
    context size). ``engine_url``: run the model in that inference server (vLLM, SGLang,
    ``llama-server``) instead of in process; ``models`` then names one bundled model, whose
    GGUF vocabulary counts the tokens (it must be the model the server runs);
    ``engine_api_key``: the bearer token it wants, if any; ``engine_pin_slots``: give each
    session a ``llama-server`` slot of its own (off when several servers share it). All come
    from the operator, never from a request."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    tool_modules: tuple[str, ...] = ()
    mcp_servers: tuple[tuple[str, str], ...] = ()
    max_body_bytes: int = 64_000
    max_prompt_chars: int = 16_000
    max_message_chars: int = 4_000
    max_messages_per_session: int = 64
    max_tokens_limit: int = 4096
    max_live_sessions: int = 64
    max_kept_sessions: int = 256
    max_events_per_session: int = 50_000
    max_session_s: float = 600.0
    llama_threads: int | None = None
    max_batch: int = 8
    max_queue: int = 32
    kv_budget: int | None = None
    engine_url: str | None = None
    engine_api_key: str | None = field(default=None, repr=False)
    engine_pin_slots: bool = True
    models: tuple[str, ...] = field(default=("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"))

    def check(self) -> None:
        """Raise :class:`UnsafeBindError` for a non-loopback bind without a token, and
        :class:`ValueError` for an ``allowed_hosts`` entry that is no host, a size out of
        range, or an ``engine_url`` that is no http(s) URL or comes with other than one model."""
        if not is_loopback(self.host) and not self.token:
            raise UnsafeBindError(
                f"binding to {self.host} exposes the server: set a token (--token or "
                "ASYNCLM_TOKEN) or bind to 127.0.0.1")
        for label, url in self.mcp_servers:
            if not label or not url.startswith(("http://", "https://")):
                raise ValueError(f"MCP server {label!r}={url!r} is not LABEL=http(s)://URL")
        for entry in self.allowed_hosts:
            if entry != "*" and parse_host(entry) is None:
                raise ValueError(f"allowed host {entry!r} is not host, host:port or *")
        if self.max_batch < 1 or self.max_queue < 0:
            raise ValueError("max batch must be at least 1 and max queue at least 0")
        if self.kv_budget is not None and self.kv_budget < 1:
            raise ValueError("the KV budget must be a positive number of tokens")
        if self.engine_url is not None:
            if not self.engine_url.startswith(("http://", "https://")):
                raise ValueError(f"engine URL {self.engine_url!r} is not http(s)://...")
            if len(self.models) != 1:
                raise ValueError("an engine URL serves one model: name the bundled model "
                                 "whose vocabulary it uses (--engine-model)")
