"""The Markdown report of a BFCL benchmark result (see :func:`asynclm.bench.bfcl.run.run_bfcl`)."""

from __future__ import annotations

from typing import Any

from asynclm.bench.bfcl.bfcl_prompt import BFCL_PROMPT
from asynclm.bench.bfcl.records import FAILURE_MODES
from asynclm.bench.bfcl.summary import comparisons, paired

__all__ = ["dialect_sections", "markdown"]


def _s(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or x != x else f"{x:.{digits}f}"


def _x(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x:.2f}x"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _median_p10(row: dict[str, Any], key: str) -> str:
    """``row[key_median] (p10 row[key_p10])`` to two places, or a dash."""
    if row.get(f"{key}_median") is None:
        return "—"
    return f"{_s(row[f'{key}_median'], 2)} (p10 {_s(row[f'{key}_p10'], 2)})"


def markdown(result: dict[str, Any], command: str | None = None) -> str:
    p = result["params"]
    env = result.get("environment", {})
    if p["engine"] == "sim":
        engine = (f"simulator (virtual time, {p['tpot_ms']:g} ms/token, TTFT {p['ttft_ms']:g} ms;"
                  " oracle model making the ground-truth calls, longest first)")
    else:
        engine = (f"{p['model']}" + (f" + LoRA adapter `{p['adapter']}`" if p.get("adapter") else "")
                  + f" in-process (llama.cpp, {env.get('threads')} threads, greedy,"
                  f" max {p['max_tokens']} tokens)")
    prof = result["profile"]
    lines = [
        f"# BFCL {p['category']} — {result['n_items']} items"
        f" (offset {p['offset']}), {engine}",
        "",
    ]
    cmd = command or result.get("command")
    if cmd:
        lines += [f"Command: `{cmd}`", ""]
    if result.get("merged_from"):
        head = ("Merged from the runs:" if len(result["merged_from"]) > 1
                else "Summarized again from the saved result of the run:")
        lines += [head, "", *(f"- `{c}`" for c in result["merged_from"]), ""]
    if rb := result.get("rebound"):
        lines += [f"Lower bounds re-derived from the runs' stored measurements: `{rb['command']}`"
                  f" (records: {', '.join(f'{k} {n}' for k, n in rb['records'].items())}).", ""]
    lines += [
        f"Tool times: profile `{prof['name']}` ({prof['law']}, mean {prof['mean_s'] * 1000:.0f} ms),"
        f" seed {p['seed']}; every strategy sees the same time for the same call."
        + (" Cheat sheet: the ground-truth calls are in the prompt." if p.get("cheat_sheet")
           and p["engine"] != "sim" else ""),
        "",
        "| strategy | median (s) | p10 (s) | p90 (s) | speedup vs sync (medians / per-item) |"
        " BFCL accuracy | well-formed calls | calls/item | efficiency (LB÷measured) |"
        " efficiency, ingest counted | bound vs sync |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, r in result["strategies"].items():
        acc = f"{r['n_valid']}/{r['n']}" + (f" ({_pct(r['accuracy'])})" if r["n"] else "")
        sp = (f"{_x(r.get('speedup_vs_sync'))} / {_x(r.get('speedup_vs_sync_per_item_median'))}"
              if "speedup_vs_sync" in r else "—")
        eff, eff_i = _median_p10(r, "efficiency"), _median_p10(r, "efficiency_ingest")
        err = f" ({r['n_errors']} failed)" if r.get("n_errors") else ""
        lines.append(
            f"| {s}{err} | {_s(r['median_s'])} | {_s(r['p10_s'])} | {_s(r['p90_s'])} | {sp} |"
            f" {acc} | {_pct(r['well_formed_rate'])} | {_s(r['calls_per_item'], 1)} | {eff} |"
            f" {eff_i} | {_x(r.get('bound_vs_sync_per_item_median'))} |")
    lines += [
        "",
        "Time breakdown, medians over items (s): model track = decode + prefill + interrupt +"
        " idle; tools = wall time with a tool running; overlap = decoding while a tool ran.",
        "",
        "| strategy | first token | decode | prefill | interrupt | idle | tools | overlap |"
        " tokens | lower bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, r in result["strategies"].items():
        b = r.get("breakdown_median_s") or {}
        lines.append(
            f"| {s} | {_s(r.get('first_token_median_s'))} | {_s(b.get('decode_s'))} |"
            f" {_s(b.get('prefill_s'))} | {_s(b.get('interrupt_s'))} | {_s(b.get('idle_s'))} |"
            f" {_s(b.get('tool_s'))} | {_s(b.get('overlap_s'))} |"
            f" {_s(r.get('tokens_median'), 0)} | {_s(r.get('lb_median_s'))} |")
    lines += [
        "",
        "Lower bound of a run (its own measurements): P + max(D − T − A, maxᵢ(Gᵢ + Eᵢ)) + A, with P"
        " the prefill, D all decode time, T the decode time of trap blocks, A the decode after"
        " the last interrupt (the answer), Gᵢ = decode time per token × tokens of call i, Eᵢ its"
        " measured execution time; calls on one tool instance count as a chain. Ingest counted:"
        " the same bound with the run's interrupt time I (result tokens appended to the context)"
        " as model-track work, P + max(D − T − A + I, maxᵢ(Gᵢ + Eᵢ)) + A. Bound vs sync: per"
        " item, the measured sync latency ÷ this strategy's ingest-counted bound (median): the"
        " most any schedule doing the same work could gain over sync."
        + (f" `{BFCL_PROMPT}` is BFCL's own one-shot prompt: no tool runs, so its latency is"
           " generation only." if BFCL_PROMPT in result["strategies"] else ""),
    ]
    live = {s: sum(1 for it in result.get("items", ()) if it["runs"].get(s, {}).get("live_state_ok"))
            for s in result["strategies"]}
    if any(it["runs"].get(s, {}).get("live_state_ok") is not None
           for it in result.get("items", ()) for s in result["strategies"]):
        mode = ("written ahead (each instance's calls kept in order by the executor)"
                if p.get("write_ahead") else "written once the previous call on the same"
                " instance returned")
        lines += ["", "Multi-turn on BFCL's real tool classes; accuracy is BFCL's"
                  " `multi_turn_checker` on the calls in the order they took effect. Live"
                  " instances matching the ground truth's state after every turn (BFCL's"
                  " `state_checker`): " + ", ".join(f"{s} {n}/{result['n_items']}"
                                                   for s, n in live.items())
                  + (f". Calls on one instance were {mode}." if p["engine"] == "sim" else
                     ". Calls on one instance run one at a time, in the order the model wrote them.")]
    if any(r.get("runs_forged") is not None and s != BFCL_PROMPT
           for s, r in result["strategies"].items()):
        enforced = "on" if p.get("enforce", True) else "**off**"
        lines += ["", f"Protocol behaviour (runtime enforcement {enforced}; runs out of"
                  f" {result['n_items']}): " + "; ".join(
                      f"{s}: wrote a result marker itself {r['runs_forged']}, wrote a trap"
                      f" {r['runs_traps']}, ended with results pending {r['runs_eos_waits']}"
                      for s, r in result["strategies"].items() if s != BFCL_PROMPT) + "."]
    stops = {s: r["stop_reasons"] for s, r in result["strategies"].items()
             if set(r["stop_reasons"]) - {"eos"}}
    if stops:
        lines += ["", "Stop reasons other than end of text: " + "; ".join(
            f"{s}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for s, c in stops.items())
            + "."]
    lines += dialect_sections(result)
    if "wall_s" in env:
        extra = f", model load {env['load_s']:.1f} s" if "load_s" in env else ""
        lines += ["", f"Wall time {env['wall_s']:.1f} s{extra}."]
    lines.append("")
    return "\n".join(lines)


def dialect_sections(result: dict[str, Any]) -> list[str]:
    """A run comparing dialects (run keys ``<dialect>/<strategy>``): accuracy beside latency,
    forged results, tokens per interrupt and failure modes per run; then the paired outcomes
    per category (:func:`~asynclm.bench.bfcl.summary.comparisons`). Nothing for other runs."""
    summ = result["strategies"]
    if not any("/" in k for k in summ):
        return []
    modes = [m for m in FAILURE_MODES if any(r.get("failures", {}).get(m) for r in summ.values())]
    lines = [
        "", "## Dialects", "",
        f"Dialects {', '.join(result['params'].get('dialects', []))}; framings"
        f" {', '.join(result['params'].get('framings', []))} (native dialects). Failure modes:"
        " the first that applies to a run that was not right (token cap, malformed call, no"
        " call, wrong function, stopped calling after a result, too few calls, too many, wrong"
        " arguments, run error). Forged: results the model wrote itself (rolled back), runs /"
        " total.",
        "",
        "| run | accuracy | median (s) | tokens | forged | interrupts | tokens/interrupt |"
        + "".join(f" {m.replace('_', ' ')} |" for m in modes),
        "|---|---|---|---|---|---|---|" + "---|" * len(modes),
    ]
    for k, r in summ.items():
        acc = f"{r['n_valid']}/{r['n']}" + (f" ({_pct(r['accuracy'])})" if r["n"] else "")
        fails = r.get("failures", {})
        lines.append(
            f"| {k} | {acc} | {_s(r['median_s'])} | {_s(r.get('tokens_median'), 0)} |"
            f" {r.get('runs_forged', 0)} / {r.get('forged', 0)} | {r.get('interrupts', 0)} |"
            f" {_s(r.get('tokens_per_interrupt'), 1)} |"
            + "".join(f" {fails.get(m, 0)} |" for m in modes))
    pairs = comparisons(list(summ))
    if pairs:
        lines += [
            "", "Paired outcomes (same items): right under both, only under A, only under B,"
            " under neither.", "",
            "| category | A | B | both | only A | only B | neither |",
            "|---|---|---|---|---|---|---|",
        ]
        items = result.get("items", [])
        for a, b in pairs:
            for cat, c in paired(items, a, b).items():
                lines.append(f"| {cat} | {a} | {b} | {c['both']} | {c['only_a']} |"
                             f" {c['only_b']} | {c['neither']} |")
    return lines
