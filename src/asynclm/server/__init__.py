"""``asynclm serve``: an HTTP API and a live web page over sessions (extra ``serve``).

Import :func:`create_app` / :func:`serve` from here; FastAPI and uvicorn are imported only when
they are called, so ``import asynclm`` never needs the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asynclm.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]


def create_app(config: ServerConfig | None = None) -> Any:
    """The ASGI application (FastAPI) for ``config``."""
    from asynclm.server.app import create_app as _create

    return _create(config)


def serve(config: ServerConfig) -> None:
    """Run the server with uvicorn until interrupted (refuses an unsafe bind; see
    :meth:`ServerConfig.check`)."""
    from asynclm.server.app import serve as _serve

    _serve(config)


def __getattr__(name: str) -> Any:
    if name == "ServerConfig":
        from asynclm.server.config import ServerConfig

        return ServerConfig
    raise AttributeError(name)
