"""Fail when any two modules of the kit import each other, directly or through others.

import-linter's contracts (``.importlinter``) keep the layers in order; this check covers what a
layers contract cannot see: a cycle between modules of one package (as the audit's engine and its
rule modules once were, or ``run.executors`` and ``run.ray_executor``). Function-level imports
count: a lazy import only moves the cycle to run time.
Usage: ``python tools/import_cycles.py [package]``; exit 1 on a cycle.
"""

from __future__ import annotations

import sys

import grimp


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every component of more than one module is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def module_graph(package: str) -> dict[str, set[str]]:
    built = grimp.build_graph(package)
    # A package's __init__ importing its own submodules is how a package exposes its API, not a cycle.
    graph: dict[str, set[str]] = {}
    for module in built.modules:
        imported = built.find_modules_directly_imported_by(module)
        graph[module] = {m for m in imported if not module.startswith(m + ".") and not m.startswith(module + ".")}
    return graph


def main(argv: list[str]) -> int:
    package = argv[1] if len(argv) > 1 else "kit"
    cycles = strongly_connected(module_graph(package))
    for members in cycles:
        print(f"import cycle: {' <-> '.join(members)}")
    print(f"{package}: {len(cycles)} import cycle(s)")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
