"""The incremental arguments reader (protocol.stream_args) and the dialect seam."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.protocol import CML, DEFAULT_MARKERS, parse_body
from asynclm.protocol.cml import CmlDialect
from asynclm.protocol.events import Markers, Ref
from asynclm.protocol.stream_args import ArgLine, ArgValue, BodyReader, CmlArgumentsReader

CODE = '[CALL] c1 [HEAD] run_code(n=3, code="x = 1\\nprint(x)\\ny = 2\\n", tag=\'a,b\') [END]'
BLOCKS = [
    CODE,
    '[CALL] c1 [HEAD] {"arguments": {"q": "a\\nb\\nc", "k": [1, 2]}, "name": "search"} [END]',
    '[CALL] run_code("""a\nb\nc""", 2, x="", z=r"a\\nb") [END]',
    '[CALL] c [HEAD] f(a="\\\\n\\"x\\n", b=[1, {"k": ")"}], c=$c1.x, d=-2.5) [END]',
]


def feed(text: str, cuts: list[int], reader: CmlArgumentsReader | None = None) -> list:
    r = reader or CML.arguments_reader()
    out, last = [], 0
    for cut in sorted(set(cuts)):
        out += r.feed(text[last:cut])
        last = cut
    return out + r.feed(text[last:])


def test_each_argument_once_complete_and_lines_of_a_string() -> None:
    r = CML.arguments_reader()
    assert r.feed('[CALL] c1 [HEAD] run_code(n=3, ') == [ArgValue("n", 3)]
    assert r.fn == "run_code"
    assert r.feed('code="x = 1\\npri') == [ArgLine("code", "x = 1")]
    assert r.feed('nt(x)\\n') == [ArgLine("code", "print(x)")]
    assert r.feed('y = 2", tag=1') == [ArgValue("code", "x = 1\nprint(x)\ny = 2")]
    assert r.feed(") [END] trailing(z=1)") == [ArgValue("tag", 1)]
    assert not r.failed


def test_values_match_the_final_parse() -> None:
    for block in BLOCKS:
        pieces = feed(block, [])
        body = CML.call_body(block)
        parsed = parse_body(body)
        values = {p.name: p.value for p in pieces if isinstance(p, ArgValue)}
        assert values == {**dict(enumerate(parsed.pos)), **parsed.args}


def test_positional_json_and_references() -> None:
    assert feed(BLOCKS[2], [])[:3] == [ArgLine(0, "a"), ArgLine(0, "b"), ArgValue(0, "a\nb\nc")]
    json_pieces = feed(BLOCKS[1], [])
    assert json_pieces == [ArgLine("q", "a"), ArgLine("q", "b"), ArgValue("q", "a\nb\nc"),
                           ArgValue("k", [1, 2])]  # held until the name came
    assert ArgValue("c", Ref("c1", ("x",))) in feed(BLOCKS[3], [])


def test_a_body_that_cannot_parse_stops_the_reader() -> None:
    r = CML.arguments_reader()
    assert r.feed("[CALL] c [HEAD] f(a=1 b=2, c=3) [END]") == []
    assert r.failed
    b = BodyReader()
    assert b.feed("f(a=1, ") == [ArgValue("a", 1)]
    assert b.feed("b=open('x').read(), c=1)") == [] and b.failed


def test_other_markers_and_no_id() -> None:
    m = Markers(call="<<C>>", interrupt="<<I>>", trap="<<T>>", head="<<H>>", end="<<E>>")
    r = CmlDialect(m).arguments_reader()
    assert r.feed("<<C>> a1 <<H>> f(x=1, y=[2]) <<E>> g(z=3)") == [
        ArgValue("x", 1), ArgValue("y", [2])]
    assert feed("[CALL] f(x=1) [END]", []) == [ArgValue("x", 1)]
    assert DEFAULT_MARKERS.end == "[END]"


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(BLOCKS), st.lists(st.integers(0, 120), max_size=25))
def test_any_chunking_gives_the_same_pieces(block: str, cuts: list[int]) -> None:
    assert feed(block, [c for c in cuts if c <= len(block)]) == feed(block, [])
