"""Read a Python callable: name, description, parameters → a pydantic argument model.

Parameter descriptions come from ``Annotated[..., Field(description=...)]`` (wins) or from the
docstring (Google, numpy, reST or Epydoc, via docstring-parser). A parameter annotated
``ToolContext`` (or ``ToolContext | None``) is left out and injected at call time.
Each parameter becomes a synthetic field aliased to the parameter's name, so names such as
``json`` or ``model_name`` never clash with ``BaseModel`` attributes.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import PydanticJsonSchemaWarning

from ._context import ToolContext

__all__ = ["FunctionInfo", "inspect_function", "is_async_callable", "json_schema_of"]


@dataclass(frozen=True)
class FunctionInfo:
    """What a tool needs to know about its Python function."""

    name: str
    description: str
    model: type[BaseModel]
    params: tuple[str, ...]  # schema parameters in signature order
    ctx_param: str | None  # name of the injected ToolContext parameter
    positional_only: tuple[str, ...]  # parameters that must be passed positionally
    is_async: bool


def inspect_function(
    fn: Callable[..., Any], localns: Mapping[str, Any] | None = None
) -> FunctionInfo:
    """Inspect ``fn``; raises ``TypeError`` for signatures a tool cannot have.

    ``localns`` resolves string annotations naming local classes (the decorator passes its
    caller's locals)."""
    name = _name_of(fn)
    signature = inspect.signature(fn)
    hints = _type_hints(fn, name, localns)
    doc = _parse_doc(inspect.getdoc(fn))
    doc_params = {p.arg_name: p.description for p in doc.params if p.description} if doc else {}

    fields: dict[str, Any] = {}
    params: list[str] = []
    positional_only: list[str] = []
    ctx_param: str | None = None
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args/**kwargs parameters are not supported")
        annotation = hints.get(param.name, param.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        if param.kind is param.POSITIONAL_ONLY:
            positional_only.append(param.name)
        if _is_context(annotation):
            ctx_param = param.name
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[f"p{len(params)}"] = (
            _with_alias(annotation, param.name, doc_params.get(param.name)),
            default,
        )
        params.append(param.name)

    config = ConfigDict(extra="forbid", populate_by_name=False, protected_namespaces=())
    model_name = re.sub(r"\W", "_", name) + "_arguments"
    model = create_model(model_name, __config__=config, **fields)
    return FunctionInfo(
        name=name,
        description=_description(doc, inspect.getdoc(fn)),
        model=model,
        params=tuple(params),
        ctx_param=ctx_param,
        positional_only=tuple(positional_only),
        is_async=is_async_callable(fn),
    )


def json_schema_of(model: type[BaseModel]) -> dict[str, Any]:
    """The raw pydantic JSON Schema (non-serializable defaults silently omitted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        return model.model_json_schema(by_alias=True)


def _name_of(fn: Callable[..., Any]) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__name__", None) or type(target).__name__
    return str(name)


def _type_hints(
    fn: Callable[..., Any], name: str, localns: Mapping[str, Any] | None
) -> dict[str, Any]:
    target = fn.func if isinstance(fn, functools.partial) else fn
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = type(target).__call__  # a callable object: read its __call__
    # The function's own module first; the decorating scope only for names it lacks.
    for namespace in (None, localns):
        try:
            return typing.get_type_hints(
                target, localns=namespace and dict(namespace), include_extras=True
            )
        except NameError as exc:
            error = exc
        except Exception:  # exotic annotation objects: let pydantic judge the raw ones
            return {}
    raise TypeError(
        f"tool {name}: cannot resolve a type hint ({error}); define the type at module level"
    ) from None


def _parse_doc(text: str | None) -> docstring_parser.Docstring | None:
    if not text:
        return None
    try:
        return docstring_parser.parse(text)
    except docstring_parser.ParseError:
        return None


def _description(doc: docstring_parser.Docstring | None, raw: str | None) -> str:
    if doc is None:
        return (raw or "").strip()
    parts = [p.strip() for p in (doc.short_description, doc.long_description) if p and p.strip()]
    return "\n\n".join(parts)


def _is_context(annotation: Any) -> bool:
    if annotation is ToolContext:
        return True
    if typing.get_origin(annotation) is Annotated:
        return _is_context(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(members) == 1 and members[0] is ToolContext
    return False


def _has_description(annotation: Any) -> bool:
    if typing.get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in annotation.__metadata__)


def _with_alias(annotation: Any, alias: str, doc: str | None) -> Any:
    """``annotation`` with a leading ``Field(alias=..., description=doc)``; user metadata wins."""
    extra: dict[str, Any] = {"alias": alias}
    if doc and not _has_description(annotation):
        extra["description"] = " ".join(doc.split())
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        return Annotated[(base, Field(**extra), *metadata)]
    return Annotated[annotation, Field(**extra)]


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (functions, partials, async ``__call__``)."""
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isfunction(fn) or inspect.ismethod(fn) or not callable(fn):
        return False
    return inspect.iscoroutinefunction(type(fn).__call__)
