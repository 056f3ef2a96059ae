"""Bind and validate call arguments; turn pydantic errors into short model-readable problems."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from ._errors import ToolArgumentError

__all__ = ["ArgumentValidator"]

_MAX_PROBLEMS = 8
_MAX_REPR = 60


class ArgumentValidator:
    """Validates ``(args, pos)`` for one tool against its argument model.

    ``fill_defaults=True`` (Python tools) returns every parameter, defaults included, with
    validated Python values (nested models stay models). ``False`` (schema-only tools) returns
    only the arguments given, dumped back to plain JSON-like data.
    """

    __slots__ = ("_fields", "_plain", "fill_defaults", "model", "params")

    def __init__(
        self, model: type[BaseModel], params: Sequence[str], *, fill_defaults: bool
    ) -> None:
        self.model = model
        self.params = tuple(params)
        self.fill_defaults = fill_defaults
        self._fields = tuple(model.model_fields)  # synthetic field names, same order as params
        self._plain = _plain_signature(model, self.params) if fill_defaults else None

    def validate(
        self, tool_name: str, args: Mapping[str, Any], pos: Sequence[Any] = ()
    ) -> dict[str, Any]:
        """Validated keyword arguments; raises :class:`ToolArgumentError` listing every problem."""
        if self._plain is not None and not pos and type(args) is dict:
            fast = _validate_plain(self._plain, args)
            if fast is not None:
                return fast
        if not isinstance(args, Mapping):
            raise ToolArgumentError(
                tool_name, [f"arguments must be a mapping, not {type(args).__name__}"]
            )
        data = dict(args)
        problems: list[str] = []
        if len(pos) > len(self.params):
            problems.append(
                f"takes {len(self.params)} positional arguments but {len(pos)} were given"
            )
        for name, value in zip(self.params, pos, strict=False):
            if name in data:
                problems.append(f"got multiple values for argument {name!r}")
            data[name] = value
        try:
            instance = self.model.model_validate(data)
        except ValidationError as exc:
            problems.extend(_describe(exc, data, self.params))
        if problems:
            if len(problems) > _MAX_PROBLEMS:
                problems[_MAX_PROBLEMS:] = [f"and {len(problems) - _MAX_PROBLEMS} more problems"]
            raise ToolArgumentError(tool_name, problems)
        if self.fill_defaults:
            return {
                name: getattr(instance, field)
                for name, field in zip(self.params, self._fields, strict=True)
            }
        return instance.model_dump(mode="python", by_alias=True, exclude_unset=True)


_PLAIN_TYPES = frozenset({int, str, float, bool})
_REQUIRED = object()
_Plain = tuple[tuple[str, type, bool, Any], ...]


def _plain_signature(model: type[BaseModel], params: tuple[str, ...]) -> _Plain | None:
    """``(name, type, optional, default)`` per parameter if every parameter is a bare ``int``,
    ``str``, ``float`` or ``bool`` (or that ``| None``) with no constraint, else None."""
    out = []
    for name, field in zip(params, model.model_fields.values(), strict=True):
        ann, optional = field.annotation, False
        args = typing.get_args(ann)
        if args and len(args) == 2 and type(None) in args and typing.get_origin(ann) in (
                typing.Union, types.UnionType):
            ann, optional = next(a for a in args if a is not type(None)), True
        if ann not in _PLAIN_TYPES or field.metadata or field.default_factory is not None:
            return None
        default = _REQUIRED if field.is_required() else field.default
        if default is not _REQUIRED and default is not None and type(default) is not ann:
            return None
        out.append((name, ann, optional, default))
    return tuple(out)


def _validate_plain(plain: _Plain, args: dict[str, Any]) -> dict[str, Any] | None:
    """The fast path: when every argument already has its parameter's exact type (what
    validation would return unchanged), the arguments with defaults filled in; else None
    (the caller validates with pydantic, which also reports every problem)."""
    out: dict[str, Any] = {}
    given = 0
    for name, kind, optional, default in plain:
        value = args.get(name, _REQUIRED)
        if value is _REQUIRED:
            if default is _REQUIRED:
                return None
            out[name] = default
        elif type(value) is kind or (value is None and optional):
            out[name] = value
            given += 1
        else:
            return None
    return out if given == len(args) else None


def _describe(exc: ValidationError, data: dict[str, Any], params: tuple[str, ...]) -> list[str]:
    missing: list[str] = []
    unexpected: list[str] = []
    other: list[str] = []
    by_path: dict[str, list[str]] = {}
    inputs: dict[str, Any] = {}
    for err in exc.errors(include_url=False):
        loc = err.get("loc", ())
        path = _path(loc, data)
        kind = err.get("type", "")
        if kind == "missing" and len(loc) == 1:
            missing.append(path)
        elif kind == "extra_forbidden" and len(loc) == 1:
            unexpected.append(path)
        elif kind == "missing":
            other.append(f"argument {path}: required field missing")
        elif kind == "extra_forbidden":
            other.append(f"argument {path}: unexpected field")
        elif not loc:
            other.append(str(err.get("msg", "invalid arguments")))
        else:
            messages = by_path.setdefault(path, [])
            message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if message not in messages:
                messages.append(message)
            inputs.setdefault(path, err.get("input"))
    problems: list[str] = []
    if missing:
        problems.append(
            f"missing required argument{'s' if len(missing) > 1 else ''} " + ", ".join(missing)
        )
    for path, messages in by_path.items():
        problems.append(f"argument {path}: {' or '.join(messages)} (got {_short(inputs[path])})")
    problems.extend(other)
    if unexpected:
        valid = ", ".join(params) if params else "none"
        problems.append(
            f"unexpected argument{'s' if len(unexpected) > 1 else ''} "
            f"{', '.join(unexpected)} (valid arguments: {valid})"
        )
    return problems


def _path(loc: tuple[Any, ...], data: Any) -> str:
    """Render a pydantic ``loc`` as ``'a.b[0]'``, skipping union/validator tags not in the input."""
    text = ""
    current = data
    for part in loc:
        if isinstance(current, Mapping) and part in current:
            text += f".{part}" if text else str(part)
            current = current[part]
        elif (
            isinstance(current, list | tuple)
            and isinstance(part, int)
            and -len(current) <= part < len(current)
        ):
            text += f"[{part}]"
            current = current[part]
        elif not text:
            text = str(part)  # a missing or unexpected top-level key
            current = None
        elif isinstance(current, Mapping) or current is None:
            text += f".{part}"  # a missing nested key
            current = None
    return repr(text)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."
