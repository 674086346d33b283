"""The import graph of the ``mlbuild`` package: which module imports which (at the top or inside a
function), every cycle, and every private name (``_x``) imported from another module.

    .venv/bin/python scripts/import_graph.py [--dot graph.dot] [--packages]

Exits 1 when there is a cycle or a private import, so CI-style checks can call it. ``--packages``
prints the graph between subpackages (``pipeline -> recipe``), the view the architecture map draws.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mlbuild"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import in a file, top-level or not."""
    mod = module_name(path)
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("mlbuild")]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(mod, is_pkg, node.level, node.module)
            if target.startswith("mlbuild"):
                out.append((target, [a.name for a in node.names]))
    return out


def build() -> tuple[dict[str, set[str]], list[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for mod, path in modules.items():
        for target, names in imports(path):
            for name in names or [None]:
                sub = f"{target}.{name}" if name else target
                dest = sub if sub in modules else target
                if dest in modules and dest != mod:
                    graph[mod].add(dest)
                dunder = name is not None and name.startswith("__") and name.endswith("__")
                if name and name.startswith("_") and not dunder and dest == target and target != mod:
                    private.append(f"{mod} imports {name} from {target}")
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dot", type=Path)
    ap.add_argument("--packages", action="store_true")
    args = ap.parse_args()
    graph, private = build()
    if args.packages:

        def pkg(m: str) -> str:
            parts = m.split(".")
            return parts[1] if len(parts) > 2 else (parts[1] if len(parts) == 2 else parts[0])

        edges = sorted({(pkg(a), pkg(b)) for a, bs in graph.items() for b in bs if pkg(a) != pkg(b)})
        for a, b in edges:
            print(f"{a} -> {b}")
    else:
        for m in sorted(graph):
            print(f"{m}: {', '.join(sorted(graph[m])) or '-'}")
    if args.dot:
        lines = ["digraph mlbuild {"] + [f'  "{a}" -> "{b}";' for a, bs in sorted(graph.items()) for b in sorted(bs)]
        args.dot.write_text("\n".join([*lines, "}"]) + "\n")
    found = cycles(graph)
    print(f"\n{len(graph)} modules, {sum(len(v) for v in graph.values())} imports")
    print(f"cycles: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    print(f"private names imported across modules: {len(private)}" + "".join(f"\n  {p}" for p in private))
    return 1 if found or private else 0


if __name__ == "__main__":
    sys.exit(main())
