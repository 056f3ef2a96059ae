"""How often the batched engine's greedy tokens equal the single-session engine's.

The same prompts (the serving benchmark's eight, through the model's chat template) are decoded
greedily, ``--tokens`` tokens each, (a) one after another on a ``LlamaCppEngine`` and (b) all at
once on a ``BatchedLlamaEngine`` (one sequence each, stepping together); then, per prompt, the
first position where they differ. llama.cpp's CPU kernels round differently with the number of
rows in a batch and with where a sequence's cells sit in the cache, so a near-tie between the
two best tokens can flip; this measures how often it does.

    python benchmarks/batched_exactness.py --model qwen2.5-coder-0.5b --tokens 64 \\
        --out benchmarks/results/batched-exactness-0.5b
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from asynclm.bench.serving import PROMPTS
from asynclm.engines.base import ChatMessage
from asynclm.engines.batched import BatchedLlamaEngine
from asynclm.engines.llamacpp import LlamaCppEngine
from asynclm.models import model_path


async def single(path: Path, prompts: list[list[int]], n: int, threads: int) -> list[list[int]]:
    engine = LlamaCppEngine(path, n_threads=threads)
    try:
        out = []
        for p in prompts:
            await engine.prefill(p, reuse_prefix=False)
            out.append([await engine.step() for _ in range(n)])
        return out
    finally:
        await engine.aclose()


async def batched(path: Path, prompts: list[list[int]], n: int, threads: int) -> list[list[int]]:
    engine = BatchedLlamaEngine(path, n_threads=threads, n_seq_max=len(prompts),
                                retain_closed=False)
    try:
        async def one(p: list[int]) -> list[int]:
            async with await engine.acquire() as seq:
                await seq.prefill(p, reuse_prefix=False)
                return [await seq.step() for _ in range(n)]

        return list(await asyncio.gather(*(one(p) for p in prompts)))
    finally:
        await engine.aclose()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    path = model_path(args.model)
    vocab = LlamaCppEngine(path, n_threads=args.threads)
    prompts = [vocab.tokenize_chat([ChatMessage("user", q)]) for q in PROMPTS]
    vocab.close()
    a = asyncio.run(single(path, prompts, args.tokens, args.threads))
    b = asyncio.run(batched(path, prompts, args.tokens, args.threads))
    rows: list[dict[str, Any]] = []
    for q, x, y in zip(PROMPTS, a, b, strict=True):
        first = next((i for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v), None)
        rows.append({"prompt": q, "identical": first is None, "first_difference": first})
    same = sum(r["identical"] for r in rows)
    cmd = "python benchmarks/batched_exactness.py " + " ".join(argv)
    md = [f"# Batched vs single-session greedy tokens: {args.model}", "", f"Command: `{cmd}`", "",
          f"{len(PROMPTS)} prompts, {args.tokens} greedy tokens each, all {len(PROMPTS)} "
          "stepping together on the batched engine: "
          f"**{same}/{len(PROMPTS)} identical**.", "",
          "| prompt | identical | first differing token |", "|---|---|---|"]
    md += [f"| {r['prompt']} | {'yes' if r['identical'] else 'no'} | "
           f"{'—' if r['first_difference'] is None else r['first_difference']} |" for r in rows]
    Path(f"{args.out}.md").write_text("\n".join(md) + "\n")
    Path(f"{args.out}.json").write_text(json.dumps(
        {"model": args.model, "tokens": args.tokens, "identical": same, "prompts": rows,
         "command": cmd}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main(sys.argv[1:])
