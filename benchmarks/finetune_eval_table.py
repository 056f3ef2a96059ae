"""Base vs fine-tuned model on the held-out BFCL items, from two `bench bfcl` runs made with
`--no-enforce` (the model may write results itself; such attempts are counted, not prevented):
protocol behaviour, well-formed calls and accuracy per strategy, and the fine-tuning goals.

    python benchmarks/finetune_eval_table.py BASE.json TUNED.json --out benchmarks/results/finetune-eval
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from asynclm.protocol import Interrupt, Parser, Text

GOAL_FORGED = 2  # the tuned model attempts to write an interrupt in at most 2 of 40 items


def wrote_before_results(run: dict[str, Any]) -> bool:
    """The model wrote prose (not calls or traps) before the last result was injected: it
    answered, or guessed, before its results were in. Only meaningful for runs without
    forged markers (a forged ``[INTR]`` would count as a result here)."""
    parser = Parser(transcript=True)
    events = [*parser.feed(run["transcript"]), *parser.close()]
    last = max((k for k, e in enumerate(events) if isinstance(e, Interrupt)), default=0)
    return any(isinstance(e, Text) and e.text.strip() for e in events[:last])


def _early(result: dict[str, Any], strategy: str) -> int:
    return sum(1 for it in result["items"]
               if (r := it["runs"].get(strategy)) is not None
               and not r["counters"].get("forged") and wrote_before_results(r))


def rows(label: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for strategy, s in result["strategies"].items():
        out.append({
            "model": label, "strategy": strategy, "n": s["n"], "n_valid": s["n_valid"],
            "accuracy": s["accuracy"], "well_formed_rate": s["well_formed_rate"],
            "calls_per_item": s["calls_per_item"], "runs_forged": s.get("runs_forged"),
            "runs_traps": s.get("runs_traps"), "runs_eos_waits": s.get("runs_eos_waits"),
            "runs_prose_before_results": _early(result, strategy),
            "median_s": s["median_s"], "stop_reasons": s["stop_reasons"],
        })
    return out


def goals(base: dict[str, Any], tuned: dict[str, Any]) -> dict[str, Any]:
    b, t = base["strategies"], tuned["strategies"]
    ta = t.get("async", {})
    return {
        "tuned_async_runs_forged": ta.get("runs_forged"),
        "forged_goal_met": ta.get("runs_forged") is not None and ta["runs_forged"] <= GOAL_FORGED,
        "tuned_async_runs_traps": ta.get("runs_traps"),
        "tuned_async_runs_prose_before_results": _early(tuned, "async"),
        "tuned_async_runs_eos_waits": ta.get("runs_eos_waits"),
        "tuned_async_valid": ta.get("n_valid"),
        "base_sync_valid": b.get("sync", {}).get("n_valid"),
        "accuracy_goal_met": (ta.get("n_valid") is not None and "sync" in b
                              and ta["n_valid"] >= b["sync"]["n_valid"]),
    }


def markdown(base: dict[str, Any], tuned: dict[str, Any], table: list[dict[str, Any]],
             g: dict[str, Any], command: str) -> str:
    lines = [
        f"# Fine-tuned vs base {base['params']['model']} on held-out BFCL items "
        f"({base['params']['category']}, runtime enforcement off)",
        "",
        f"Table: `{command}`. Runs:",
        "",
        f"- base: `{base['command']}`",
        f"- fine-tuned: `{tuned['command']}`",
        "",
        "With enforcement off the runtime does not roll back result or interrupt markers the "
        "model writes; it counts them (`forged`). A trap is the model writing `[TRAP][END]` to "
        "wait; 'ended with results pending' is the model ending its turn while calls run (the "
        "runtime waits then, as for a trap). 'Prose before results' counts runs without a "
        "written result marker in which the model wrote text other than calls and traps before "
        "its last result was injected (it answered or guessed early).",
        "",
        "| model | strategy | BFCL accuracy | well-formed calls | calls/item | runs that wrote a "
        "result marker | runs with a trap | runs that ended with results pending | prose before "
        "results | median s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['model']} | {r['strategy']} | {r['n_valid']}/{r['n']} ({r['accuracy']:.0%}) | "
            f"{r['well_formed_rate']:.0%} | {r['calls_per_item']:.2f} | {r['runs_forged']} | "
            f"{r['runs_traps']} | {r['runs_eos_waits']} | {r['runs_prose_before_results']} | "
            f"{r['median_s']:.2f} |")
    lines += [
        "",
        "Goals (issue: fine-tuning to the interrupt protocol):",
        "",
        f"- the fine-tuned model writes a result marker in at most {GOAL_FORGED} items in async "
        f"mode: {g['tuned_async_runs_forged']} — {'met' if g['forged_goal_met'] else 'not met'};",
        f"- it is at least as accurate in async mode as the base model in sync mode: "
        f"{g['tuned_async_valid']} against {g['base_sync_valid']} — "
        f"{'met' if g['accuracy_goal_met'] else 'not met'};",
        f"- it waits for its results: in async mode it wrote a trap in "
        f"{g['tuned_async_runs_traps']} of {tuned['strategies'].get('async', {}).get('n')} runs, "
        f"ended its turn with results pending in {g['tuned_async_runs_eos_waits']}, and wrote "
        f"prose before its last result in {g['tuned_async_runs_prose_before_results']} (in the "
        f"runs without a trap its results came in while it was still writing calls).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("tuned", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="output stem (.json and .md)")
    args = ap.parse_args(argv)
    base, tuned = (json.loads(p.read_text()) for p in (args.base, args.tuned))
    if base["params"]["enforce"] or tuned["params"]["enforce"]:
        print("both runs must be made with --no-enforce", file=sys.stderr)
        return 2
    table = rows("base", base) + rows("fine-tuned", tuned)
    g = goals(base, tuned)
    command = "python " + shlex.join(["benchmarks/finetune_eval_table.py",
                                      *map(str, (args.base, args.tuned)), "--out", str(args.out)])
    stem = str(args.out)  # not with_suffix: "…-0.5b" has a dot of its own
    Path(stem + ".json").write_text(json.dumps(
        {"rows": table, "goals": g, "command": command, "adapter": tuned["params"].get("adapter")},
        indent=2) + "\n")
    Path(stem + ".md").write_text(markdown(base, tuned, table, g, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
