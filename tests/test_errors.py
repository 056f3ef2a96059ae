"""The error tree of :mod:`asynclm.errors`: one root for every public exception of the package,
the standard-library bases callers already catch, the same closed-engine error from every
engine, and the ``error_type`` values of :class:`~asynclm.errors.ErrorType`."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pkgutil
from typing import Any

import pytest

import asynclm
from asynclm import errors
from asynclm.errors import (
    AsyncLMError, EngineClosedError, EngineError, ErrorType, ExtraNotInstalled, ProtocolError,
    SessionError, ToolError, error_type_of,
)

# Exceptions that are deliberately not asynclm errors: a fault the fault benchmark's tools raise
# (a ``BaseException`` subclass a badly written tool might raise; foreign by design).
FOREIGN = {"asynclm.bench.faults.CustomBase"}


def _public_exception_classes() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a module of the package (modules needing a
    missing optional dependency are left out)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(asynclm.__path__, "asynclm."):
        try:
            module = importlib.import_module(info.name)
        except ImportError as e:  # an extra that is not installed here
            assert not (e.name or "").startswith("asynclm"), f"{info.name}: {e}"
            continue
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not name.startswith("_")):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_public_exception_is_an_asynclm_error():
    classes = _public_exception_classes()
    assert len(classes) >= 25  # the walk found the package's exceptions (not an empty walk)
    outside = sorted(q for q, c in classes.items() if not issubclass(c, AsyncLMError))
    assert outside == sorted(FOREIGN & classes.keys())


def test_every_class_in_errors_is_in_the_module_docstring_tree():
    doc = errors.__doc__ or ""
    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, AsyncLMError):
            assert name in doc, name
    for qualname in _public_exception_classes():
        assert qualname.rsplit(".", 1)[1] in doc or qualname in FOREIGN, qualname


def _cls(path: str) -> Any:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


# (where it has always been importable, its branch, the stdlib base callers may catch)
OLD = [
    ("asynclm.protocol.body.BodyError", ProtocolError, ValueError),
    ("asynclm.bench.bfcl.bfcl_prompt.DecodeError", ProtocolError, ValueError),
    ("asynclm.tools.ToolError", ToolError, Exception),
    ("asynclm.tools._errors.ToolArgumentError", ToolError, ValueError),
    ("asynclm.tools.UnknownToolError", ToolError, LookupError),
    ("asynclm.tools.ToolNotImplemented", ToolError, Exception),
    ("asynclm.tools.MCPToolError", AsyncLMError, RuntimeError),
    ("asynclm.engines.llamacpp.EngineClosedError", EngineError, RuntimeError),
    ("asynclm.engines.llamacpp.ContextFullError", EngineError, ValueError),
    ("asynclm.engines.llamacpp.LlamaCppNotInstalled", EngineError, ImportError),
    ("asynclm.engines.openai_http.ServerError", EngineError, RuntimeError),
    ("asynclm.engines.openai_http.ServerUnavailable", EngineError, RuntimeError),
    ("asynclm.engines.openai_http.ServerTimeout", EngineError, RuntimeError),
    ("asynclm.engines.openai_http.ServerResponseError", EngineError, RuntimeError),
    ("asynclm.server.engines.EngineUnavailable", EngineError, ValueError),
    ("asynclm.runtime.control.SessionClosedError", SessionError, RuntimeError),
    ("asynclm.runtime.futures.ReferenceError_", SessionError, LookupError),
    ("asynclm.server.registry.TooManySessions", SessionError, RuntimeError),
    ("asynclm.bench.bfcl._pkg.BfclNotInstalled", ExtraNotInstalled, ImportError),
    ("asynclm.models.ModelError", AsyncLMError, Exception),
    ("asynclm.server.config.UnsafeBindError", AsyncLMError, ValueError),
]


@pytest.mark.parametrize(("path", "branch", "base"), OLD, ids=[p for p, _, _ in OLD])
def test_old_names_keep_their_place_and_stdlib_base(path, branch, base):
    cls = _cls(path)
    assert issubclass(cls, branch) and issubclass(cls, base)
    assert issubclass(cls, AsyncLMError) and issubclass(cls, Exception)
    name = path.rsplit(".", 1)[1]
    if hasattr(errors, name):  # a core class: defined once, in asynclm.errors
        assert cls is getattr(errors, name)


def test_branches_do_not_widen_stdlib_catches():
    """Only the concrete classes carry a stdlib base: ``except ValueError`` (say) catches no
    more than before."""
    for branch in (AsyncLMError, ProtocolError, ToolError, EngineError, SessionError):
        assert branch.__mro__[1:] in {(Exception, BaseException, object),
                                      (AsyncLMError, Exception, BaseException, object)}
    assert not issubclass(errors.MCPToolError, ToolError)  # a tool's own failure
    assert not issubclass(EngineClosedError, errors.ServerError)
    assert issubclass(errors.LlamaCppNotInstalled, ExtraNotInstalled)


def test_messages_and_attributes_unchanged():
    e = errors.UnknownToolError("serch", ["search", "zzz"])
    assert str(e) == "unknown tool 'serch'; did you mean 'search'?" and e.suggestions == ("search",)
    a = errors.ToolArgumentError("f", ["x: missing"])
    assert str(a) == "invalid arguments for f: x: missing" and a.problems == ("x: missing",)
    assert errors.ServerResponseError("bad", status=404).status == 404


def test_top_level_exports():
    for name in ("AsyncLMError", "EngineError", "ProtocolError", "SessionError", "ToolError",
                 "EngineClosedError", "ErrorType", "SessionClosedError"):
        assert name in asynclm.__all__ and getattr(asynclm, name) is getattr(errors, name)


# -- the same closed-engine error from every engine ----------------------------------------------

async def _use(engine: Any) -> list[type[BaseException]]:
    raised = []
    for use in (lambda: engine.prefill([1, 2]), lambda: engine.step(),
                lambda: engine.append([1]), lambda: engine.rollback(0)):
        with pytest.raises(EngineClosedError) as info:
            await use()
        raised.append(type(info.value))
    return raised


def test_closed_sim_engine_raises_engine_closed_error():
    from asynclm.testing.sim import ScriptedPolicy, SimEngine

    async def go():
        engine = SimEngine(ScriptedPolicy(["hello"]))
        await engine.prefill(engine.tokenize("hi"))
        await engine.step()
        await engine.aclose()
        await engine.aclose()  # idempotent
        return await _use(engine)

    assert asyncio.run(go()) == [EngineClosedError] * 4


def test_closed_http_engine_raises_engine_closed_error():
    pytest.importorskip("httpx")
    from asynclm.testing.http import FakeServer

    async def go():
        engine = await FakeServer("vllm", script=b"Hi.").connect()
        await engine.prefill([257, 104])
        await engine.step()
        await engine.aclose()
        return await _use(engine)

    raised = asyncio.run(go())
    assert raised == [EngineClosedError] * 4
    assert not issubclass(raised[0], errors.ServerError)  # no longer "the server failed"


def test_closed_llamacpp_engine_raises_engine_closed_error():
    """Without loading a model: a closed engine refuses every job before touching its worker
    (the real model is closed and used in tests/engines/test_llamacpp.py, slow)."""
    from asynclm.engines.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine.__new__(LlamaCppEngine)
    engine._closed = True
    engine.n_vocab = 10
    assert asyncio.run(_use(engine)) == [EngineClosedError] * 4


# -- error_type ---------------------------------------------------------------------------------

def test_error_type_values_are_the_recorded_strings():
    assert {m.name: m.value for m in ErrorType} == {
        "MALFORMED_CALL": "MalformedCall",
        "REFERENCE_ERROR": "ReferenceError",
        "DEPENDENCY_FAILED": "DependencyFailed",
        "TIMEOUT": "Timeout",
        "CANCELLED": "Cancelled",
        "TOOL_CANCELLED": "CancelledError",
        "UNRENDERABLE_RESULT": "UnrenderableResult",
        "UNKNOWN_TOOL": "UnknownToolError",
        "INVALID_ARGUMENTS": "ToolArgumentError",
        "NOT_IMPLEMENTED": "ToolNotImplemented",
        "BAD_REFERENCE_PATH": "ReferenceError_",
        "CANNOT_CANCEL": "CannotCancel",
    }
    for m in ErrorType:  # a str in every way a record, a trace or JSON sees it
        assert isinstance(m, str) and m == m.value and str(m) == m.value and f"{m}" == m.value
        assert json.dumps(m) == json.dumps(m.value)


def test_error_type_of():
    assert error_type_of(errors.UnknownToolError("x", [])) is ErrorType.UNKNOWN_TOOL
    assert error_type_of(errors.ToolArgumentError("f", [])) is ErrorType.INVALID_ARGUMENTS
    assert error_type_of(errors.ToolNotImplemented("f")) is ErrorType.NOT_IMPLEMENTED
    assert error_type_of(errors.ReferenceError_("p")) is ErrorType.BAD_REFERENCE_PATH
    # anything else (a tool's own exception): its class name, a plain str; open-ended
    for exc, name in ((ValueError("v"), "ValueError"), (errors.MCPToolError("m"), "MCPToolError")):
        assert error_type_of(exc) == name and type(error_type_of(exc)) is str

    class Sub(errors.ToolArgumentError):
        pass

    assert error_type_of(Sub("f", [])) == "Sub"  # a subclass keeps its own name, as before


def test_records_carry_error_type_members():
    from asynclm.runtime import Session, run_virtual
    from asynclm.testing.sim import ScriptedPolicy, SimEngine
    from asynclm.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    script = ["[CALL] u [HEAD] nope(x=1) [END]", "[CALL] v [HEAD] add(a=1) [END]", "done"]
    result = run_virtual(Session(SimEngine(ScriptedPolicy(script)), [add], system="t").run("go"))
    by = {c.id: c for c in result.calls}
    assert by["u"].error_type is ErrorType.UNKNOWN_TOOL and by["u"].error_type == "UnknownToolError"
    assert by["v"].error_type is ErrorType.INVALID_ARGUMENTS
    assert json.loads(json.dumps({"t": by["u"].error_type})) == {"t": "UnknownToolError"}
