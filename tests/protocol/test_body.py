"""Call bodies: the accepted language, references, JSON bodies, hostile input, audit events."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from asynclm.protocol import BodyError, ParsedBody, Ref, parse_body
from asynclm.protocol.body import MAX_BODY_CHARS, MAX_DEPTH, parse_ref

# ---------------------------------------------------------------------------------------------
# accepted Python call syntax


def test_keywords_and_literals() -> None:
    body = parse_body('fn(a=1, b="x", c=[1, {"k": None}], d=-2.5, e=True, f=+3, g=(1, 2))')
    assert body == ParsedBody(
        "fn", {"a": 1, "b": "x", "c": [1, {"k": None}], "d": -2.5, "e": True, "f": 3, "g": [1, 2]}
    )
    assert isinstance(body.args["g"], list)  # tuples come back as lists


def test_dotted_function_name_and_positional_args() -> None:
    assert parse_body("math.factorial(5)") == ParsedBody("math.factorial", {}, (5,))
    assert parse_body("a.b.c(1, 'two', x=3)") == ParsedBody("a.b.c", {"x": 3}, (1, "two"))


def test_json_literal_names() -> None:
    assert parse_body("f(a=true, b=false, c=null, d=[null])").args == {
        "a": True,
        "b": False,
        "c": None,
        "d": [None],
    }


def test_whitespace_newlines_comments_trailing_comma() -> None:
    src = '\n  f(\n    a=1,  # first\n    b="two",\n  )\n'
    assert parse_body(src) == ParsedBody("f", {"a": 1, "b": "two"})


def test_string_forms() -> None:
    assert parse_body(
        r"""f(a='x', b="y", c='''z''', d=r"\d+", e=u"é", f="a\"b", g="\n")"""
    ).args == {
        "a": "x",
        "b": "y",
        "c": "z",
        "d": "\\d+",
        "e": "é",
        "f": 'a"b',
        "g": "\n",
    }


def test_python_keyword_as_argument_name() -> None:
    assert parse_body('f(from="a", to="b", class=1, None=2)').args == {
        "from": "a",
        "to": "b",
        "class": 1,
        "None": 2,
    }


def test_dict_keys_literals() -> None:
    assert parse_body('f(d={1: "a", "b": 2, -1: 3, None: 4})').args == {
        "d": {1: "a", "b": 2, -1: 3, None: 4}
    }


def test_empty_call() -> None:
    assert parse_body("get_time()") == ParsedBody("get_time", {}, ())


# ---------------------------------------------------------------------------------------------
# references


@pytest.mark.parametrize(
    ("src", "ref"),
    [
        ("$c1", Ref("c1")),
        ("$10", Ref("10")),  # LLMCompiler reads this as $1 followed by 0
        ("$1", Ref("1")),
        ("$c-2", Ref("c-2")),
        ("$c1.items.0", Ref("c1", ("items", 0))),
        ("$c1.path.to.0.x", Ref("c1", ("path", "to", 0, "x"))),
        ('$c1["key"][0]', Ref("c1", ("key", 0))),
        ("$c1['a b'][-1].z", Ref("c1", ("a b", -1, "z"))),
        ("$c1[ 3 ]", Ref("c1", (3,))),
    ],
)
def test_references(src: str, ref: Ref) -> None:
    assert parse_body(f"f(x={src})").args == {"x": ref}


def test_ten_is_not_one_then_zero() -> None:
    body = parse_body("f($10, $1, a=[$10.0, {'k': $2}])")
    assert body.pos == (Ref("10"), Ref("1"))
    assert body.args == {"a": [Ref("10", (0,)), {"k": Ref("2")}]}


def test_dollar_inside_strings_is_text() -> None:
    # The parser never reads references inside strings: the executor interpolates those that
    # name earlier calls, once it knows the session's ids (tests/runtime/test_futures.py).
    src = """f(a="$c1", b='$10 costs $5', c='''$x''', d=r"\\$y", e="it's $z\\" $w")"""
    assert parse_body(src).args == {
        "a": "$c1",
        "b": "$10 costs $5",
        "c": "$x",
        "d": "\\$y",
        "e": "it's $z\" $w",
    }


def test_ref_errors() -> None:
    with pytest.raises(BodyError, match=r"'\$' must be followed"):
        parse_body("f(a=$)")
    with pytest.raises(BodyError, match="subscript"):
        parse_body("f(a=$c1[1:2])")
    with pytest.raises(BodyError):
        parse_body("f(a=$c1(1))")
    with pytest.raises(BodyError):
        parse_body("$c1(1)")
    with pytest.raises(BodyError, match="attribute"):
        parse_body("f(a=$c1 .x)")


def test_parse_ref_grammar() -> None:
    assert parse_ref("$ab.0.c rest") == (Ref("ab", (0, "c")), 7)
    assert parse_ref('$ab["x"]', 0) == (Ref("ab", ("x",)), 8)


# ---------------------------------------------------------------------------------------------
# JSON bodies


def test_json_body() -> None:
    assert parse_body('{"name": "get_time", "arguments": {"city": "Paris", "n": [1, null]}}') == (
        ParsedBody("get_time", {"city": "Paris", "n": [1, None]})
    )


@pytest.mark.parametrize("key", ["arguments", "args", "parameters"])
def test_json_argument_keys(key: str) -> None:
    assert parse_body(f'{{"name": "f", "{key}": {{"a": 1}}}}') == ParsedBody("f", {"a": 1})


def test_json_arguments_as_string_and_openai_wrapper() -> None:
    body = '{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\": \\"$c1.x\\"}"}}'
    assert parse_body(body) == ParsedBody("f", {"a": Ref("c1", ("x",))})
    assert parse_body('{"name": "f"}') == ParsedBody("f", {})


def test_json_refs_only_whole_strings() -> None:
    body = parse_body(
        '{"name": "f", "arguments": {"a": "$c1", "b": "cost $10", "c": ["$c2.items.0"],'
        ' "d": {"$c3": "$c3[\\"k\\"]"}}}'
    )
    assert body.args == {
        "a": Ref("c1"),
        "b": "cost $10",
        "c": [Ref("c2", ("items", 0))],
        "d": {"$c3": Ref("c3", ("k",))},
    }


@pytest.mark.parametrize(
    "src",
    [
        '{"name": 3}',
        '{"arguments": {}}',
        '{"name": "f", "arguments": [1]}',
        '{"name": "f", "city": "Paris"}',
        '{"name": "f", "args": {}, "arguments": {}}',
        '{"name": "f", "arguments": {"a": 1, "a": 2}}',
        '{"name": "f", "arguments": "not json"}',
        '{"name": "f",',
        "[1, 2]",
    ],
)
def test_json_errors(src: str) -> None:
    with pytest.raises(BodyError):
        parse_body(src)


# ---------------------------------------------------------------------------------------------
# rejected input


@pytest.mark.parametrize(
    ("src", "reason"),
    [
        ("", "empty"),
        ("get_time", "must be a call"),
        ('"just a string"', "must be a call"),
        ('get_weather(city: "Paris")', "syntax"),  # the 0.5B model's style
        ("f(x)", "unknown name 'x'"),
        ("f(a=x.y)", "attribute"),
        ("f(a=[1][0])", "subscript"),
        ("f(a=g(1))", "nested calls"),
        ("f(1)(2)", "nested calls"),
        ("f(a=lambda: 1)", "lambda"),
        ('f(a=f"{x}")', "f-strings"),
        ("f(a=[i for i in y])", "'for'"),
        ("f(a=(b := 1))", ":="),
        ("f(a=1 + 2)", "operators"),
        ("f(a=--1)", "unary"),
        ("f(a=-x)", "unary"),
        ("f(*args)", "starred"),
        ("f(**kw)", "starred"),
        ("f(a={**d})", "starred"),
        ("f(a={1, 2})", "set literals"),
        ("f(a=b'x')", "bytes"),
        ("f(a=1j)", "complex"),
        ("f(a=1 if 2 else 3)", "'if'"),
        ("f(a=not 1)", "'not'"),
        ("f(a=1, a=2)", "given twice"),
        ("f(a=1, 2)", "syntax"),
        ("f(a=1 == 1)", "=="),
        ("f(a=...)", "attribute"),
        ("f(a=1; b=2)", ";"),
        ("f(a='unterminated)", "unterminated string"),
        ("f(a=1", "syntax"),
        ("f(a=1))", "unbalanced"),
        ("f(a='x' 'y')", "missing comma"),
        ("await f()", "'await'"),
        ("(f)(1)", "nested calls"),
    ],
)
def test_rejected(src: str, reason: str) -> None:
    with pytest.raises(BodyError) as info:
        parse_body(src)
    assert reason in str(info.value)


HOSTILE = [
    "__import__('os').system('echo x')",
    "().__class__.__bases__[0].__subclasses__()",
    "print(open('/etc/passwd').read())",
    "f(a=open('/etc/passwd'))",
    "f(a=__import__('subprocess').Popen(['echo', 'x']))",
    "f(a=(lambda: __import__('os').system('echo x'))())",
    "f(a=f\"{__import__('os').system('echo x')}\")",
    "f(a=[c for c in ().__class__.__base__.__subclasses__()])",
    "f(a=(x := __import__('os')))",
    "f(a=exec('import os'))",
    "f(a=eval('1'))",
    "f(**{'a': __import__('os')})",
    "f(a=globals()['__builtins__'])",
    "f.__globals__['os'](1)",
    "f(a=breakpoint())",
    "getattr(__builtins__, 'exec')('1')",
    "compile('1', 'x', 'exec')()",
    "f(a=1).__class__",
    "f(a=[1][0].__class__)",
    '{"name": "f", "arguments": {"a": 1}}.__class__',
]


@pytest.mark.parametrize("src", HOSTILE)
def test_hostile_bodies_are_errors(src: str) -> None:
    with pytest.raises(BodyError):
        parse_body(src)


def test_open_is_just_a_tool_name() -> None:
    # Syntactically a call to a tool named "open": the registry rejects unknown tools. Parsing it
    # runs nothing (the audit-hook test below proves it).
    assert parse_body("open('/etc/passwd')") == ParsedBody("open", {}, ("/etc/passwd",))


_recording: list[tuple[str, tuple[Any, ...]]] | None = None


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _recording is not None:
        _recording.append((event, args))


_hook_installed = False


def test_audit_hook_sees_no_execution() -> None:
    """Parsing hostile bodies fires no process/file/exec event; ``compile`` fires at most once
    per body, for ``ast.parse`` of the body itself."""
    global _recording, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_hook)  # cannot be removed; inert unless _recording is set
        _hook_installed = True
    bodies = [*HOSTILE, "open('/etc/passwd')", "f(a=[1])", "f(a=1)"]
    per_body: list[list[tuple[str, tuple[Any, ...]]]] = []
    for src in bodies:
        _recording = []
        try:
            parse_body(src)
        except BodyError:
            pass
        finally:
            per_body.append(_recording)
            _recording = None
    for src, events in zip(bodies, per_body, strict=True):
        names = [e for e, _ in events]
        assert set(names) <= {"compile"}, (src, names)
        compiles = [a for e, a in events if e == "compile"]
        assert len(compiles) <= 1, src
        for args in compiles:
            source = args[0]
            assert source in (src, src.encode()), (src, source)
    # the bodies that pass the pre-scan reach ast.parse exactly once; a plain one never does
    assert len([a for e, a in per_body[-2] if e == "compile"]) == 1
    assert len([a for e, a in per_body[-3] if e == "compile"]) == 1
    assert per_body[-1] == []


# ---------------------------------------------------------------------------------------------
# guards


def test_size_guard() -> None:
    with pytest.raises(BodyError, match="longer than"):
        parse_body("f(a='" + "x" * MAX_BODY_CHARS + "')")


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("(", ")"), ("{", "}")])
def test_depth_guard(opener: str, closer: str) -> None:
    deep = MAX_DEPTH + 1
    inner = opener * deep + closer * deep if opener != "{" else '{"a": ' * deep + "1" + "}" * deep
    with pytest.raises(BodyError, match="nesting deeper"):
        parse_body(f"f(a={inner})")
    ok = MAX_DEPTH - 2
    inner = "[" * ok + "]" * ok
    assert parse_body(f"f(a={inner})").fn == "f"


def test_json_depth_guard() -> None:
    deep = '{"name": "f", "arguments": {"a": ' + "[" * 100 + "]" * 100 + "}}"
    with pytest.raises(BodyError, match="nesting deeper"):
        parse_body(deep)


@pytest.mark.parametrize(
    "src",
    [
        "f(a=" + "-" * 30000 + "1)",
        "f(a=" + "not " * 10000 + "1)",
        "f(a=" + "1+" * 20000 + "1)",
        "f(a=" + "x." * 20000 + "x)",
        "a." * 20000 + "f()",
        "f" + "(1)" * 20000,
        "f(a=x" + "[0]" * 20000 + ")",
        "f(a=" + "(" * 5000 + ")" * 5000 + ")",
    ],
)
def test_pathological_bodies_fail_fast(src: str) -> None:
    with pytest.raises(BodyError):
        parse_body(src)


def test_null_byte() -> None:
    with pytest.raises(BodyError):
        parse_body("f(a=1)\x00")
