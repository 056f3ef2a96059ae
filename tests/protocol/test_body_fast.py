"""The fast path of call-body parsing gives exactly what the full (ast) path gives, or declines."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from asynclm.protocol.body import BodyError, ParsedBody, _parse_fast, _parse_python_body


def _full(text: str) -> ParsedBody | str:
    try:
        return _parse_python_body(text)
    except BodyError as exc:
        return f"error: {exc}"


def _same(text: str) -> None:
    fast = _parse_fast(text)
    if fast is not None:  # repr: 1, 1.0, True and -0.0 stay distinct
        assert repr(fast) == repr(_full(text)), text


names = st.sampled_from(["a", "city", "x_1", "from", "class", "True", "None", "null", "_", "A9"])
fn_names = st.sampled_from(
    ["f", "get_weather", "math.factorial", "a.b.c", "class", "true", "x.def", "None", "a..b"])
ws = st.sampled_from(["", " ", "  ", "\n", "\t", " \n "])
numbers = st.one_of(
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["0", "-0", "00", "007", "1.", ".5", "1e5", "1_000", "-0.0", "1.5.3", "0x1F"]),
)
strings = st.text(max_size=12).flatmap(
    lambda s: st.sampled_from([f'"{s}"', f"'{s}'", f'"""{s}"""', f'r"{s}"', f'b"{s}"']))
values = st.one_of(numbers, strings, st.sampled_from(
    ["True", "False", "None", "true", "false", "null", "[1]", "$c1", "x", "+3"]))


@st.composite
def bodies(draw: st.DrawFn) -> str:
    args = draw(st.lists(st.tuples(names, ws, ws, values, ws), max_size=5))
    inner = ",".join(f"{n}{a}={b}{v}{c}" for n, a, b, v, c in args)
    if draw(st.booleans()):
        inner += draw(st.sampled_from([",", " ,", ",,", "", " "]))
    return f"{draw(fn_names)}{draw(st.sampled_from(['', ' ']))}({draw(ws)}{inner})"


@settings(max_examples=600, deadline=None)
@given(bodies())
@example('f(a="x", b=-1.5, c=True, d=null,)')
@example("f(a=1, a=2)")
@example('f(a="\x00")')
@example('f(a="\r")')
def test_fast_path_agrees_with_the_full_path(text: str) -> None:
    _same(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('f(a=1.5"x\' ,)\n-Tr')), max_size=20))
def test_fast_path_agrees_on_near_miss_text(text: str) -> None:
    _same(text)


def test_fast_path_takes_the_common_bodies() -> None:
    assert _parse_fast('get_weather(city="Paris", days=3)') == ParsedBody(
        "get_weather", {"city": "Paris", "days": 3})
    assert _parse_fast("f()") == ParsedBody("f")
    for declined in ("f(1)", "f(a=[1])", "f(a=$c1)", "f(a=1, a=2)", "class(x=1)", 'f(a="\\n")'):
        assert _parse_fast(declined) is None, declined
