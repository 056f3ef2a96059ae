"""The call-quality benchmark classifies each call the model wrote."""

from asynclm.bench.calls import run_calls, summarize
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.runtime import run_virtual

SCRIPT = [
    '[CALL] w1 [HEAD] get_weather(city="Rome", days=2) [END]\n',
    '[CALL] w2 [HEAD] get_weather(city=) [END]\n',  # does not parse
    '[CALL] b1 [HEAD] book_table(at="noon") [END]\n',  # not a tool
    '[CALL] x1 [HEAD] convert_currency(amount="lots", source="EUR", target="USD") [END]\n',
    '[CALL] w3 [HEAD] get_weather(city="Rome", days=2) [END]\n',  # same call again
    "[TRAP][END]",
    "Rome: sunny.",
]


def test_calls_are_classified_and_counted() -> None:
    engine = SimEngine(ScriptedPolicy(SCRIPT), SimCosts())
    runs = run_virtual(run_calls(engine, {"rome": "Weather in Rome?"}, ["async"]))
    (run,) = runs
    assert run["kinds"] == {"ok": 2, "malformed": 1, "unknown_tool": 1, "invalid_args": 1}
    assert run["repeated_calls"] == 1
    assert run["stop_reason"] == "eos"
    s = summarize(runs)["async"]
    assert s["calls"] == 5 and s["well_formed_share"] == 2 / 5 and s["finished"] == 1
