"""Re-derive the lower bounds of stored single-turn BFCL results from their own measurements.

Usage: ``python benchmarks/rebound_bfcl.py RESULT.json [...] [--model qwen2.5-coder-1.5b]``

For results written before a fix to ``asynclm.bench.bfcl.bound.bound_parts``: every term of the
bound is stored in the record (prefill, decode, answer, trap decode, interrupt time, each call's
emission, execution and injection times, tokens generated) except the per-call decode estimates
``G_i = τ · tokens(call block)``; those come from the call blocks in the stored transcript,
tokenized with the model's vocabulary. Each record is first checked: the old formula on these
inputs must give the stored ``sum_G_s`` and ``lb_s``, else the record is left as it is and
reported. Checked records get the current bound and efficiencies; the summaries and the Markdown
report beside the file are written again, and ``rebound`` in the file says what was done.
Multi-turn records are left alone (their turns keep no per-call raw text apart), and so are
simulator results (re-running them is cheap).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

from asynclm.bench import latency
from asynclm.bench.bfcl.bound import bound_parts
from asynclm.bench.bfcl.report import markdown
from asynclm.bench.bfcl.summary import summarize
from asynclm.protocol import Call, MalformedCall, Parser, render_trap


def _raws(transcript: str, calls: list[dict[str, Any]]) -> list[str] | None:
    """Each call record's block text: by position, or by id where the transcript holds blocks
    the records do not (e.g. one cut off at the token limit)."""
    p = Parser(transcript=True)
    blocks = [e for e in [*p.feed(transcript), *p.close()] if isinstance(e, (Call, MalformedCall))]
    if len(blocks) == len(calls):
        return [b.raw for b in blocks]
    by_id = {b.id: b.raw for b in blocks}
    if len(by_id) == len(blocks) and all(c["id"] in by_id for c in calls):
        return [by_id[c["id"]] for c in calls]
    return None


def _old_bound(P: float, D: float, A: float, T: float, G: list[float],
               E: list[float]) -> float:
    rest = max(0.0, D - A - sum(G) - T)
    return latency.lower_bound([*G, rest], [*E, 0.0], prefix=P, suffix=A)


def rebound(run: dict[str, Any], tokens_of: Any) -> str:
    """Update ``run`` in place; returns what was done ("kept", "updated" or why not)."""
    calls = run.get("calls", [])
    if "turns" in run or "sum_G_s" not in run or any("id" not in c for c in calls):
        return "skipped"  # multi-turn, or BFCL's own prompt format (no injections, no bound)
    blocks = _raws(run["transcript"], calls)
    if blocks is None:
        return "call blocks do not match the call records"
    D, A, P, T = run["decode_s"], run["answer_s"], run["prefill_s"], run["trap_decode_s"]
    tau = D / run["n_generated"] if run["n_generated"] else 0.0
    injected = [c["injected_s"] for c in calls if c["injected_s"] is not None]
    keep = [i for i, c in enumerate(calls) if not injected or c["emitted_s"] <= max(injected)]

    def parts(idx: list[int], only_injected: bool) -> tuple[list[float], list[float]]:
        G = [tau * tokens_of(blocks[i]) for i in idx]
        E = [(calls[i]["exec_s"] or 0.0)
             if calls[i]["injected_s"] is not None or not only_injected else 0.0 for i in idx]
        return G, E

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)

    ingest = run["breakdown"]["interrupt_s"]
    G, E = parts(keep, True)
    lb = bound_parts(P=P, D=D, A=A, T=T, ingest=ingest, G=G, E=E)
    if "lb_ingest_s" in run and all(close(lb[k], run[k]) for k in ("lb_s", "lb_ingest_s",
                                                                    "sum_G_s")):
        return "kept"  # already the current bound
    # the bound before the fix; records written before lb_ingest_s existed counted every call
    # (and its execution)
    legacy = "lb_ingest_s" not in run
    G0, E0 = parts(list(range(len(calls))), False) if legacy else (G, E)
    T_check = tau * tokens_of(render_trap()) * run.get("counters", {}).get("traps", 0)
    if not (close(sum(G0), run["sum_G_s"]) and close(_old_bound(P, D, A, T, G0, E0), run["lb_s"])
            and close(T_check, T)):
        return "inputs do not reproduce the stored bound"
    run.update(lb)
    lat = run["latency_s"]
    run["efficiency"] = lb["lb_s"] / lat if lat > 0 else None
    run["efficiency_ingest"] = lb["lb_ingest_s"] / lat if lat > 0 else None
    return "updated"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b",
                    help="whose vocabulary tokenizes the call blocks (as the run's engine did)")
    args = ap.parse_args()
    from asynclm.engines.tokenizers import GGUFTokenizer

    tok = GGUFTokenizer.from_name(args.model)

    def tokens_of(s: str) -> int:
        return len(tok.tokenize(s, special=True))

    for path in args.results:
        with open(path) as f:
            r = json.load(f)
        if "items" not in r or r["params"].get("engine") == "sim":
            print(path, "left as it is (no items, or the simulator: run it again instead)")
            continue
        tally: dict[str, int] = {}
        for item in r["items"]:
            for run in item["runs"].values():
                what = rebound(run, tokens_of)
                tally[what] = tally.get(what, 0) + 1
        ids = [it["id"] for it in r["items"]]
        r["strategies"] = summarize(ids, {it["id"]: it["runs"] for it in r["items"]},
                                    r["params"]["strategies"])
        if "updated" not in tally:
            print(path, tally, "(nothing to update: left as it is)")
            continue
        r["rebound"] = {"command": shlex.join(["python", *sys.argv]), "records": tally}
        with open(path, "w") as f:
            json.dump(r, f, indent=2, allow_nan=False)
            f.write("\n")
        md = Path(path).with_suffix(".md")
        if md.exists():
            md.write_text(markdown(r, r.get("command") or ""))
        print(path, tally)


if __name__ == "__main__":
    main()
