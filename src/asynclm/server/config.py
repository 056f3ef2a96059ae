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
    any other URL is refused: the server never connects to a URL a request chose."""

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
    llama_instances: int = 2
    llama_threads: int | None = None
    models: tuple[str, ...] = field(default=("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"))

    def check(self) -> None:
        """Raise :class:`UnsafeBindError` for a non-loopback bind without a token, and
        :class:`ValueError` for an ``allowed_hosts`` entry that is no host."""
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
