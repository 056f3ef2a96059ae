"""Structure figures of a source tree: lines per layer, imports inside functions, import cycles.

    python benchmarks/architecture_metrics.py [SRC_DIR]      (default: src/asynclm)

Layers by path: research (bench, finetune), apps (server, CLI, demos), testing (test doubles),
library (the rest). An import inside a function body counts once per statement. Cycles: the
strongly connected components of the module import graph (grimp, every import included), when
SRC_DIR is the installed package.
"""

from __future__ import annotations

import ast
import json
import pathlib
import sys

RESEARCH = ("bench/", "finetune/", "latency.py", "runtime/compiler.py", "tools/_bfcl.py")
APPS = ("server/", "cli.py", "cli_run.py", "demo.py", "agents_demo.py", "demo_tools.py")
TESTING = ("testing/", "engines/sim/")


def layer(rel: str) -> str:
    for name, prefixes in (("testing", TESTING), ("research", RESEARCH), ("apps", APPS)):
        if any(rel.startswith(p) for p in prefixes):
            return name
    return "library"


def function_level_imports(tree: ast.AST) -> int:
    """Import statements inside a function body (each counted once)."""

    class Count(ast.NodeVisitor):
        n = depth = 0

        def visit_FunctionDef(self, node: ast.AST) -> None:
            self.depth += 1
            self.generic_visit(node)
            self.depth -= 1

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Import(self, node: ast.AST) -> None:
            self.n += self.depth > 0

        visit_ImportFrom = visit_Import

    counter = Count()
    counter.visit(tree)
    return counter.n


def cycles(package: str) -> list[list[str]]:
    import grimp

    graph = grimp.build_graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if not w.startswith(package):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return out


def main() -> None:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src/asynclm")
    lines = {"library": 0, "testing": 0, "apps": 0, "research": 0}
    nested = 0
    for f in sorted(root.rglob("*.py")):
        src = f.read_text()
        lines[layer(str(f.relative_to(root)))] += len(src.splitlines())
        nested += function_level_imports(ast.parse(src))
    total = sum(lines.values())
    report = {"lines": lines, "share": {k: round(v / total, 3) for k, v in lines.items()},
              "function_level_imports": nested}
    if len(sys.argv) == 1:
        report["cycles"] = cycles("asynclm")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
