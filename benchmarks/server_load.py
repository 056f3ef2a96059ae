"""Server load benchmark: N concurrent simulated sessions over HTTP + SSE against a server in
its own process; writes benchmarks/results/server-load.{json,md}.

    python benchmarks/server_load.py --sessions 200 --tpot-ms 20 --words 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from asynclm.bench.server_load import markdown, run_load

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--tpot-ms", type=float, default=20.0)
    ap.add_argument("--words", type=int, default=30)
    ap.add_argument("--out", default="server-load")
    args = ap.parse_args()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "asynclm.cli", "serve", "--port", str(port),
         "--max-sessions", str(args.sessions + 10)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        load_before = os.getloadavg()[0]
        result = asyncio.run(run_load(url, sessions=args.sessions, tpot_ms=args.tpot_ms,
                                      words=args.words))
    finally:
        server.terminate()
        server.wait(10)
    command = "python benchmarks/server_load.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    result["command"] = command
    result["loadavg_1min_before"] = load_before
    result["cpus"] = os.cpu_count()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result, command) + (
        f"Machine: {result['cpus']} cores; 1-minute load average before the run "
        f"{load_before:.1f} (other processes shared the cores).\n")
    (RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    return 1 if result["lost_or_bad_sessions"] else 0


if __name__ == "__main__":
    sys.exit(main())
