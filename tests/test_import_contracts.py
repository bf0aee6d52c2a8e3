"""Import contracts: the layering of docs/architecture.md, checked on the real import graph.

The forbidden imports (the data code never imports the UI; the node side never imports the
director) are import-linter contracts in pyproject.toml; this test runs them, as `./dev test`
does. Cycles are checked here module by module, function-level imports included: a cycle hidden
in a function is still a cycle (import-linter's own acyclic contract works on packages).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ctop", "agentd", "probes")

# Known cycles, one edge each, ignored while someone removes them (none today: keep it so;
# test_each_allowance_still_hides_a_cycle says when an entry must go).
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()


def import_graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)


def module_cycles(graph: grimp.ImportGraph, ignore: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    edges = {
        m: sorted(
            t for t in graph.find_modules_directly_imported_by(m) if (m, t) not in ignore
        )
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, [])
            if i < len(targets):
                work.append((node, i + 1))
                nxt = targets[i]
                if nxt not in index and nxt in edges:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    members = set(cycle)
    lines = []
    for a in cycle:
        for b in sorted(graph.find_modules_directly_imported_by(a) & members):
            where = [d["line_number"] for d in graph.get_import_details(importer=a, imported=b)]
            lines.append(f"  {a} -> {b} (line {', '.join(map(str, where))})")
    return "\n".join(lines)


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint), str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph()
    cycles = module_cycles(graph, KNOWN_CYCLE_EDGES)
    assert not cycles, "import cycles:\n" + "\n\n".join(describe(graph, c) for c in cycles)


def test_each_allowance_still_hides_a_cycle() -> None:
    """An allowance outlives its cycle only by mistake: remove it with the import."""
    graph = import_graph()
    stale = []
    for a, b in sorted(KNOWN_CYCLE_EDGES):
        cycles = module_cycles(graph, KNOWN_CYCLE_EDGES - {(a, b)})
        if not any(a in c and b in c for c in cycles):
            stale.append(f"{a} -> {b}")
    assert not stale, "no cycle left here, delete from KNOWN_CYCLE_EDGES: " + ", ".join(stale)


def test_the_cycle_finder_sees_a_function_level_cycle(tmp_path, monkeypatch) -> None:
    """The check itself can fail: two modules importing each other inside functions."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cyclepkg import b\n")
    (pkg / "b.py").write_text("from cyclepkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cyclepkg")
    assert module_cycles(graph, set()) == [["cyclepkg.a", "cyclepkg.b"]]
