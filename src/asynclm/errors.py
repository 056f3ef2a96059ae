"""Every exception asynclm raises, under one root, and the kinds of a failed call.

``except AsyncLMError`` catches anything the library itself raises; a branch catches one layer.
Each concrete class also keeps the standard-library base it has always had (``ValueError``,
``LookupError``, ``RuntimeError``, ``ImportError``), so code that catches those still works.
Exceptions raised *by a tool's own code* are never wrapped: they propagate (or are recorded)
unchanged, and are no part of this tree.

The tree::

    AsyncLMError(Exception)
    ├── ProtocolError                           the model's text is not in the language
    │   ├── BodyError (ValueError)              a call body that cannot be parsed
    │   ├── UnknownDialect (ValueError)         no dialect (or framing) of that name
    │   └── DecodeError (ValueError)            a BFCL answer            [asynclm.bench.bfcl]
    ├── ToolError                               the tools layer refused a call; nothing ran
    │   ├── ToolArgumentError (ValueError)      arguments failed validation
    │   ├── UnknownToolError (LookupError)      no tool with that name in a Toolbox
    │   └── ToolNotImplemented                  a schema-only tool invoked without a handler
    ├── MCPToolError (RuntimeError)             an MCP server's tool answered with an error
    ├── EngineError                             an engine cannot do what was asked
    │   ├── EngineClosedError (RuntimeError)    used after ``aclose``: the same in every engine
    │   ├── ContextFullError (ValueError)       the tokens do not fit into ``n_ctx``
    │   ├── EngineBusy (RuntimeError)           every sequence slot of a shared engine is taken
    │   ├── LlamaCppNotInstalled                also an ExtraNotInstalled (ImportError)
    │   ├── ServerError (RuntimeError)          an inference server failed (HttpEngine)
    │   │   ├── ServerUnavailable               cannot connect (after retries)
    │   │   ├── ServerTimeout                   no data within read_timeout_s (after retries)
    │   │   └── ServerResponseError             an HTTP error status, or an unreadable answer
    │   └── EngineUnavailable (ValueError)      model not allowed or cached      [asynclm.server]
    ├── SessionError                            a run, its calls' references, its control
    │   ├── SessionClosedError (RuntimeError)   the run a control steered has ended
    │   ├── ReferenceError_ (LookupError)       a reference path not in the referenced result
    │   ├── CannotCancel                        the model's cancel() cancelled nothing
    │   ├── TooManySessions (RuntimeError)      the server is full               [asynclm.server]
    │   │   └── QueueFull                       a model's slots and queue are full [asynclm.server]
    │   ├── UnknownCall (LookupError)           no such call in the session      [asynclm.server]
    │   └── CallConflict (RuntimeError)         a client call cannot take an answer now
    │                                                                            [asynclm.server]
    ├── ClientToolError (RuntimeError)          a client-run tool reported failure [asynclm.server]
    ├── OpenAIError                             a /v1 request refused (OpenAI's shape)
    │                                                                            [asynclm.server]
    ├── ExtraNotInstalled (ImportError)         an optional dependency is missing
    │   ├── LlamaCppNotInstalled                pip install 'asynclm[llama]' (also an EngineError)
    │   └── BfclNotInstalled                    bfcl-eval                [asynclm.bench.bfcl]
    ├── ModelError                              a model file cannot be found or installed
    └── UnsafeBindError (ValueError)            a public bind without a token    [asynclm.server]

A stdlib class in parentheses is a second base (``class BodyError(ProtocolError, ValueError)``);
a subclass inherits it. A module in brackets defines the class there (apps and research build on
the core; the core never imports them).

:class:`MCPToolError` is deliberately not a :class:`ToolError`: an MCP tool's failure is the
tool's own (it ran and failed), while a :class:`ToolError` means the call was never started.

Private control-flow exceptions (``_EndMarker``, ``_Full``) are not errors and stay outside.

:class:`ErrorType` names the kinds in :attr:`~asynclm.runtime.records.CallRecord.error_type`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from enum import StrEnum

__all__ = [
    "AsyncLMError", "BodyError", "CannotCancel", "ContextFullError", "EngineBusy",
    "EngineClosedError", "EngineError", "ErrorType", "ExtraNotInstalled", "LlamaCppNotInstalled",
    "MCPToolError", "ModelError", "ProtocolError", "ReferenceError_", "ServerError",
    "ServerResponseError", "ServerTimeout", "ServerUnavailable", "SessionClosedError",
    "SessionError", "ToolArgumentError", "ToolError", "ToolNotImplemented", "UnknownDialect",
    "UnknownToolError", "describe", "error_type_of",
]


class AsyncLMError(Exception):
    """Root of every exception asynclm raises itself."""


class ExtraNotInstalled(AsyncLMError, ImportError):
    """An optional dependency (a package extra) is missing; the message says what to install."""


# -- protocol ----------------------------------------------------------------------------------
class ProtocolError(AsyncLMError):
    """Text the model wrote is not in the accepted language."""


class BodyError(ProtocolError, ValueError):
    """A call body that is not in the accepted language. ``str(err)`` is the reason."""


class UnknownDialect(ProtocolError, ValueError):
    """No dialect of that name (``asynclm.protocol.registry.get_dialect``), or no such
    framing."""


# -- tools -------------------------------------------------------------------------------------
class ToolError(AsyncLMError):
    """Base class of every error raised by the tools layer itself (the call was not started).

    Messages are short and meant to be shown to the model as an error result.
    """


class ToolArgumentError(ToolError, ValueError):
    """Arguments of a call did not validate; the tool was not started.

    ``str(err)`` is a one-line, model-readable summary; ``problems`` holds one entry per issue.
    """

    def __init__(self, tool_name: str, problems: Sequence[str]) -> None:
        self.tool_name = tool_name
        self.problems: tuple[str, ...] = tuple(problems) or ("invalid arguments",)
        super().__init__(f"invalid arguments for {tool_name}: " + "; ".join(self.problems))


class UnknownToolError(ToolError, LookupError):
    """A call named a tool that does not exist; ``suggestions`` holds the closest names."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.name = name
        self.available: tuple[str, ...] = tuple(available)
        self.suggestions: tuple[str, ...] = tuple(
            difflib.get_close_matches(name, self.available, n=3, cutoff=0.6)
        )
        if self.suggestions:
            hint = "did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        elif self.available:
            shown = ", ".join(self.available[:20])
            more = f", ... ({len(self.available) - 20} more)" if len(self.available) > 20 else ""
            hint = f"available tools: {shown}{more}"
        else:
            hint = "no tools are available"
        super().__init__(f"unknown tool {name!r}; {hint}")

    def __str__(self) -> str:  # LookupError/KeyError-style repr quoting is not wanted here
        return str(self.args[0])


class ToolNotImplemented(ToolError):
    """A tool imported from a schema has no implementation and no handler."""

    def __init__(self, tool_name: str) -> None:
        self.tool_name = tool_name
        super().__init__(f"tool {tool_name} has no implementation")


class MCPToolError(AsyncLMError, RuntimeError):
    """An MCP server answered a call with an error result (``isError``); the message is the
    text it sent. The tool ran and failed, so this is not a :class:`ToolError`."""


# -- engines -----------------------------------------------------------------------------------
class EngineError(AsyncLMError):
    """An engine cannot do what was asked."""


class EngineClosedError(EngineError, RuntimeError):
    """The engine was closed (``aclose``); every engine raises this when used afterwards."""


class ContextFullError(EngineError, ValueError):
    """The tokens do not fit into the context window (``n_ctx``); nothing was changed."""


class EngineBusy(EngineError, RuntimeError):
    """Every sequence slot of a shared engine is taken and the caller asked not to wait
    (:meth:`asynclm.engines.batched.BatchedLlamaEngine.acquire` with ``wait=False``)."""


class LlamaCppNotInstalled(EngineError, ExtraNotInstalled):
    """llama-cpp-python is missing."""


class ServerError(EngineError, RuntimeError):
    """The inference server failed; the message says which server, request and why."""


class ServerUnavailable(ServerError):
    """The server cannot be reached (after retries)."""


class ServerTimeout(ServerError):
    """No data came within ``read_timeout_s`` (after retries)."""


class ServerResponseError(ServerError):
    """An HTTP error status (``status``), or a response the engine cannot read."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# -- sessions ----------------------------------------------------------------------------------
class SessionError(AsyncLMError):
    """A run, the references between its calls, or the control steering it."""


class SessionClosedError(SessionError, RuntimeError):
    """The run this control steered has ended; nothing more can be sent to it."""


class ReferenceError_(SessionError, LookupError):  # the name is recorded: keep it
    """A reference path does not exist in the referenced result."""


# -- models ------------------------------------------------------------------------------------
class CannotCancel(SessionError):
    """The error result of the model's ``cancel`` call that cancelled nothing (its text says
    why: unknown id, already ended, not cancellable, a built-in)."""


class ModelError(AsyncLMError):
    """A model cannot be found, installed, assembled or verified; the message says what to do."""


# -- error_type --------------------------------------------------------------------------------
class ErrorType(StrEnum):
    """The kinds of failure the runtime itself records in ``CallRecord.error_type``.

    Members are ``str`` and equal to their values, which are the strings recorded (and written
    to traces and JSON) since before this enum existed. The set is **open**: when a tool's own
    code raises, ``error_type`` is that exception's class name as a plain ``str``
    (``"ValueError"``, ``"MCPToolError"``, a tool's ``"Boom"``), so compare with strings or
    ``ErrorType`` members, never assume every value is a member. :func:`error_type_of` gives the
    value for an exception.
    """

    # the runtime's own outcomes
    MALFORMED_CALL = "MalformedCall"
    """The parser rejected the call (bad body, bad id); nothing ran."""
    REFERENCE_ERROR = "ReferenceError"
    """The call refers to itself or to an id no earlier call has; nothing ran."""
    DEPENDENCY_FAILED = "DependencyFailed"
    """A call whose result this call uses did not end ``ok``; nothing ran."""
    TIMEOUT = "Timeout"
    """The tool ran longer than its timeout (status ``timeout``)."""
    CANCELLED = "Cancelled"
    """The call was cancelled (status ``cancelled``): the run ended, a deadline, a request."""
    TOOL_CANCELLED = "CancelledError"
    """The tool raised ``CancelledError`` itself without being cancelled (status ``error``)."""
    UNRENDERABLE_RESULT = "UnrenderableResult"
    """The tool returned a value that cannot be rendered as a result."""
    # raised by the library before the tool starts: the class's name is the value
    UNKNOWN_TOOL = "UnknownToolError"
    """:class:`UnknownToolError`: no tool of that name."""
    INVALID_ARGUMENTS = "ToolArgumentError"
    """:class:`ToolArgumentError`: the arguments did not validate."""
    NOT_IMPLEMENTED = "ToolNotImplemented"
    """:class:`ToolNotImplemented`: a schema-only tool without a handler."""
    BAD_REFERENCE_PATH = "ReferenceError_"
    """:class:`ReferenceError_`: a path into an earlier result that it does not have."""
    CANNOT_CANCEL = "CannotCancel"
    """:class:`CannotCancel`: the model's ``cancel`` call cancelled nothing."""


_BY_CLASS: dict[type[BaseException], ErrorType] = {
    CannotCancel: ErrorType.CANNOT_CANCEL,
    UnknownToolError: ErrorType.UNKNOWN_TOOL,
    ToolArgumentError: ErrorType.INVALID_ARGUMENTS,
    ToolNotImplemented: ErrorType.NOT_IMPLEMENTED,
    ReferenceError_: ErrorType.BAD_REFERENCE_PATH,
}


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, or ``Type`` when it has no message; never raises (an
    exception whose ``__str__`` fails is still described by its type)."""
    try:
        msg = str(exc)
    except BaseException:  # noqa: BLE001 - the exception's own __str__ failed
        msg = ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def error_type_of(exc: BaseException) -> str:
    """The ``error_type`` recorded for ``exc``: an :class:`ErrorType` member for the library's
    own exceptions, else the exception's class name (a subclass keeps its own name)."""
    return _BY_CLASS.get(type(exc)) or type(exc).__name__
