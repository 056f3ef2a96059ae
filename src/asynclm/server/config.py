"""Server settings: where it binds, who may call it, and how big things may get."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


class UnsafeBindError(ValueError):
    """Binding to a non-loopback address without a token."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Defaults are safe: loopback only, bounded sizes. ``token``: required as
    ``Authorization: Bearer <token>`` (or ``?token=`` for the event stream) when set, and it
    must be set to bind to any other address. ``tool_modules``: Python modules a request may
    name as its tool set (besides ``demo`` and ``none``): a request can never import anything
    else."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    tool_modules: tuple[str, ...] = ()
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
        """Raise :class:`UnsafeBindError` for a non-loopback bind without a token."""
        if not is_loopback(self.host) and not self.token:
            raise UnsafeBindError(
                f"binding to {self.host} exposes the server: set a token (--token or "
                "ASYNCLM_TOKEN) or bind to 127.0.0.1")
