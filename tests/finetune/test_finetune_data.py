"""``asynclm finetune data``: the split, the DAGs, and every transcript checked against its
simulation (parsed by our own parser)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asynclm.bench.bfcl.data import load
from asynclm.finetune.data import (
    EXEC_RANGE_S, TPOT_RANGE_S, DataConfig, build_examples, check_example, item_example,
    plan_turns, user_interrupt_example, write_jsonl,
)
from asynclm.finetune.split import ALWAYS_HELD_OUT, POOL, make_split
from asynclm.protocol import Call, Interrupt, Parser, Trap


def _item(cat: str, item_id: str):
    return next(it for it in load(cat) if it.id == item_id)


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    """Every train example of the default config (about 12 s: all 160 items + 40 joins)."""
    out = [ex for ex in build_examples(DataConfig()) if not isinstance(ex, tuple)]
    assert len(out) >= 190
    return out


def test_split_is_fixed_disjoint_and_documented():
    s = make_split(0)
    assert s == make_split(0)
    assert {k: len(v) for k, v in s.train.items()} == {
        "parallel": 50, "parallel_multiple": 50, "live_parallel": 4,
        "live_parallel_multiple": 6, "multi_turn_base": 50}
    for cat in POOL:
        assert not set(s.train[cat]) & set(s.eval[cat])
        assert len(s.train[cat]) + len(s.eval[cat]) == len(load(cat))
    for cat, n in ALWAYS_HELD_OUT.items():
        first = [it.id for it in load(cat, limit=n)]
        assert set(first) <= set(s.eval[cat])
    assert make_split(1).train != s.train


def test_every_transcript_parses_and_matches_its_simulation(examples):
    kinds = {ex["kind"] for ex in examples}
    assert kinds == {"single", "multi_turn", "user_interrupt"}
    for ex in examples:
        assert check_example(ex) == [], ex["id"]


def test_times_lie_in_the_documented_ranges(examples):
    for ex in examples:
        for sim in ex["sim"]:
            assert TPOT_RANGE_S[0] <= sim["tpot_s"] <= TPOT_RANGE_S[1]
            for c in sim["calls"]:
                assert EXEC_RANGE_S[0] <= c["duration_s"] <= EXEC_RANGE_S[1]
                assert c["ended_at"] - c["started_at"] == pytest.approx(c["duration_s"])


def test_traps_and_dependencies_appear_where_the_simulation_puts_them(examples):
    multi = [ex for ex in examples if ex["kind"] == "multi_turn"]
    assert any(c["deps"] for ex in multi for s in ex["sim"] for c in s["calls"])
    assert sum(s["traps"] for ex in examples for s in ex["sim"]) > len(examples) // 2
    for ex in multi:
        for msg, sim in zip([m for m in ex["messages"] if m["role"] == "assistant"], ex["sim"]):
            events = Parser(transcript=True).feed(msg["content"])
            assert sum(isinstance(e, Trap) for e in events) == sim["traps"]


def test_user_interrupt_examples_release_the_second_question_mid_run(examples):
    users = [ex for ex in examples if ex["kind"] == "user_interrupt"]
    assert len(users) == 40
    for ex in users:
        sim = ex["sim"][0]
        text = ex["messages"][-1]["content"]
        events = Parser(transcript=True).feed(text)
        user = next(e for e in events if isinstance(e, Interrupt) and e.id == "user")
        later = [c for c in sim["calls"] if c["stage"] == 1]
        first_b = min(e.start for e in events if isinstance(e, Call)
                      and e.id in {c["id"] for c in later})
        assert user.start < first_b
        assert sim["user_at"] <= max(c["injected_at"] for c in sim["calls"])
        assert "[INTR] user" not in "".join(text[a:b] for a, b in ex["messages"][-1]["train"])


def test_train_spans_are_exactly_what_the_model_wrote():
    ex = item_example(_item("parallel", "parallel_20"), DataConfig())
    msg = ex["messages"][-1]
    trained = "".join(msg["content"][a:b] for a, b in msg["train"])
    assert "[CALL]" in trained and "[TRAP]" in trained and "All results are in" in trained
    assert "[INTR]" not in trained
    assert ex["messages"][0]["role"] == "system" and "estimated_time_s" in ex["messages"][0]["content"]


def test_multi_turn_dag_chains_calls_of_one_class():
    item = _item("multi_turn_base", "multi_turn_base_0")
    turns = plan_turns(item, 2)
    assert [p.fn for p in turns[0]] == ["cd", "mkdir", "mv"]
    assert [p.deps for p in turns[0]] == [(), (0,), (1,)]  # one stateful file system
    assert turns[1][1].args == {"file_name": "final_report.pdf", "pattern": "budget analysis"}
    single = plan_turns(_item("parallel", "parallel_20"), 2)
    assert len(single) == 1 and all(p.deps == () for p in single[0])


def test_broken_simulation_is_detected():
    ex = item_example(_item("parallel", "parallel_20"), DataConfig())
    bad = json.loads(json.dumps(ex))
    bad["sim"][0]["calls"].reverse()
    assert check_example(bad)
    bad = json.loads(json.dumps(ex))
    bad["messages"][-1]["train"] = [[0, len(bad["messages"][-1]["content"])]]
    assert "an interrupt inside a trainable span" in " ".join(check_example(bad))
    bad = json.loads(json.dumps(ex))
    bad["sim"][0]["traps"] += 1
    assert check_example(bad)
    bad = json.loads(json.dumps(ex))
    bad["sim"][0]["calls"][0]["result"] = {"status": "ok", "value": -1}
    assert "simulated result" in " ".join(check_example(bad))
    bad = json.loads(json.dumps(ex))
    c = bad["sim"][0]["calls"]
    c[0]["injected_at"], c[1]["injected_at"] = c[1]["injected_at"] + 1, c[0]["injected_at"]
    assert "order the simulation injected" in " ".join(check_example(bad))


def test_deterministic_and_jsonl(tmp_path: Path):
    cfg = DataConfig(limit=6, user_interrupts=2)
    a = write_jsonl(cfg, tmp_path / "a.jsonl")
    b = write_jsonl(cfg, tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert sum(a["examples"].values()) == 8 and a["examples"] == b["examples"]
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert all(check_example(r) == [] for r in rows)
    other = [json.loads(x) for x in write_jsonl(DataConfig(limit=6, user_interrupts=2, seed=1),
                                                tmp_path / "c.jsonl") and
             (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["messages"] for r in other] != [r["messages"] for r in rows]


def test_user_interrupt_example_directly():
    a = _item("parallel", "parallel_20")
    b = _item("parallel_multiple", "parallel_multiple_27")
    ex = user_interrupt_example(a, b, DataConfig())
    assert check_example(ex) == []
    assert ex["sources"] == [a.id, b.id]


def test_cli_writes_and_checks(tmp_path: Path):
    typer_testing = pytest.importorskip("typer.testing")
    from asynclm.cli import app

    out = tmp_path / "t.jsonl"
    r = typer_testing.CliRunner().invoke(app, ["finetune", "data", "--out", str(out),
                                               "--limit", "4", "--user-interrupts", "1"])
    assert r.exit_code == 0, r.output
    assert '"check_failures": 0' in r.output
    assert len(out.read_text().splitlines()) == 5
