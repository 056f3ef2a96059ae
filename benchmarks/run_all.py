"""`make bench`: run every benchmark and write JSON + Markdown into benchmarks/results/.

Each result records the exact command that produced it; rerun any one of them by hand."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
ASYNCLM = str(Path(sys.executable).with_name("asynclm"))

ACCURACY_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")

COMMANDS = [
    "bench synthetic --tasks 200 --calls 4 --tpot-ms 5 --seed 0 "
    "--json benchmarks/results/synthetic.json --report benchmarks/results/synthetic.md",
    "bench synthetic --tasks 200 --calls 4 --tpot-ms 20 --seed 0 "
    "--json benchmarks/results/synthetic-20ms.json --report benchmarks/results/synthetic-20ms.md",
    "bench synthetic --tasks 200 --calls 4 --tpot-ms 5 --ttft-ms 59 --seed 0 "
    "--json benchmarks/results/synthetic-ttft59.json "
    "--report benchmarks/results/synthetic-ttft59.md",
    "bench bfcl --engine sim --category parallel --limit 200 "
    "--strategies sync,sync-parallel,async-naive,async --tpot-ms 5 --ttft-ms 59 "
    "--json benchmarks/results/bfcl-sim-parallel.json "
    "--report benchmarks/results/bfcl-sim-parallel.md",
    "bench dag --tasks 50 --tpot-ms 5 --seed 0 --multi-step-parallel "
    "--json benchmarks/results/dag.json --report benchmarks/results/dag.md",
    "bench dag --tasks 50 --tpot-ms 5 --ttft-ms 59 --seed 0 --multi-step-parallel "
    "--json benchmarks/results/dag-ttft59.json --report benchmarks/results/dag-ttft59.md",
    "bench bfcl --engine sim --category multi_turn_base --write-ahead "
    "--strategies sync,sync-parallel,async-naive,async --tpot-ms 5 --ttft-ms 59 "
    "--json benchmarks/results/bfcl-sim-multi_turn_base.json "
    "--report benchmarks/results/bfcl-sim-multi_turn_base.md",
    "bench reproduce --json benchmarks/results/bfcl-reproduce.json "
    "--report benchmarks/results/bfcl-reproduce.md",
    "bench injection --model qwen2.5-coder-1.5b --repeats 3 --threads 2 "
    "--json benchmarks/results/injection.json --report benchmarks/results/injection.md",
    "bench calls --model qwen2.5-coder-1.5b --threads 2 --strategies sync,async,async-lazy "
    "--json benchmarks/results/calls-1.5b.json --report benchmarks/results/calls-1.5b.md",
    "bench bfcl --engine llamacpp --model qwen2.5-coder-1.5b --threads 2 "
    "--category parallel,parallel_multiple --limit 10 --profile web "
    "--strategies sync,sync-parallel,async,async-lazy "
    "--json benchmarks/results/bfcl-llama-1.5b-web.json "
    "--report benchmarks/results/bfcl-llama-1.5b-web.md",
    "bench bfcl --engine llamacpp --model qwen2.5-coder-1.5b --threads 2 "
    "--category parallel,parallel_multiple --limit 10 --profile paper "
    "--strategies sync,sync-parallel,async,async-lazy "
    "--json benchmarks/results/bfcl-llama-1.5b-paper.json "
    "--report benchmarks/results/bfcl-llama-1.5b-paper.md",
    # re-prefilling the context per result: about 43 s an item on this CPU (15 min in all)
    "bench bfcl --engine llamacpp --model qwen2.5-coder-1.5b --threads 2 "
    "--category parallel,parallel_multiple --limit 10 --profile web "
    "--strategies sync,sync-reprefill "
    "--json benchmarks/results/bfcl-llama-1.5b-reprefill.json "
    "--report benchmarks/results/bfcl-llama-1.5b-reprefill.md",
    "bench dag --engine llamacpp --model qwen2.5-coder-1.5b --threads 2 --repeats 3 "
    "--json benchmarks/results/dag-llama-1.5b.json "
    "--report benchmarks/results/dag-llama-1.5b.md",
    # the analogue of the paper's Table 1: four categories, 50 items each (about 1.5 h)
    *(f"bench bfcl --engine llamacpp --model qwen2.5-coder-1.5b --threads 2 --category {c} "
      "--limit 50 --strategies bfcl-prompt,sync,async "
      f"--json benchmarks/results/bfcl-accuracy-1.5b-{c}.json "
      f"--report benchmarks/results/bfcl-accuracy-1.5b-{c}.md"
      for c in ACCURACY_CATEGORIES),
    "python benchmarks/bfcl_accuracy_table.py "
    + " ".join(f"benchmarks/results/bfcl-accuracy-1.5b-{c}.json" for c in ACCURACY_CATEGORIES)
    + " --out benchmarks/results/bfcl-accuracy-1.5b",
    # fault injection at volume (simulator, virtual and real time; a few minutes)
    "bench faults --sessions 10000 --seed 0 "
    "--json benchmarks/results/faults.json --report benchmarks/results/faults.md",
    # partial execution (streamed arguments) on the simulator; the real-model run:
    # bench partial-args --engine llama --model qwen2.5-coder-1.5b --threads 2
    "bench partial-args --engine sim "
    "--json benchmarks/results/partial_args.json --report benchmarks/results/partial_args.md",
    # live scenarios, multi-second tools (research 8 s, bookings 5-6 s, weather 1 s): time to
    # first answer, total latency, answers that used every result; simulator, then the 1.5B
    "bench live --engine sim --repeats 1 "
    "--json benchmarks/results/live-sim.json --report benchmarks/results/live-sim.md",
    "bench live --engine llama --model qwen2.5-coder-1.5b --threads 2 --repeats 1 "
    "--json benchmarks/results/live.json --report benchmarks/results/live.md",
    "bench overhead --sessions 50 --calls 20 "
    "--json benchmarks/results/overhead.json --report benchmarks/results/overhead.md",
    "bench server --model qwen2.5-coder-0.5b --tasks 3 --threads 1 "
    "--json benchmarks/results/server.json --report benchmarks/results/server.md",
]


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    for cmd in COMMANDS:
        script = cmd.startswith("python ")
        print(f"$ {cmd}" if script else f"$ asynclm {cmd}", flush=True)
        argv = ([sys.executable, *shlex.split(cmd)[1:]] if script
                else [ASYNCLM, *shlex.split(cmd)])
        rc = subprocess.call(argv, cwd=ROOT.parent)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
