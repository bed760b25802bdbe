"""The audit package's shape: one job per module, imports that point one way (no cycles, lazy
imports included), a registry that is a leaf and complete once the runner is imported, and no
broad ``except`` that could turn a bug in the kit into a silently switched-off rule."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import kit.claims.audit as audit_pkg

PACKAGE = "kit.claims.audit"
PACKAGE_DIR = Path(audit_pkg.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__")
RULE_MODULES = [m for m in MODULES if m.startswith("rules_")]
TOOLBOX = {"numbers", "claim", "model_facts", "optional"}


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8"))


def _imports(module: str) -> set[str]:
    """Modules of this package that ``module`` imports anywhere (top level or inside a function);
    ``"__init__"`` stands for the package itself (``from kit.claims.audit import <not a module>``)."""
    out: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != PACKAGE else [f"{PACKAGE}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE:
                out.add("__init__")
            elif name.startswith(PACKAGE + "."):
                sub = name[len(PACKAGE) + 1 :].split(".")[0]
                out.add(sub if sub in MODULES else "__init__")
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def test_the_modules_are_the_expected_ones() -> None:
    assert {"numbers", "claim", "model_facts", "optional", "findings", "registry", "runner", "output"} <= set(MODULES)
    assert "engine" not in MODULES  # the registry-and-toolbox-in-one is gone
    assert len(RULE_MODULES) == 7


def test_no_module_imports_one_that_imports_it() -> None:
    """Depth-first search for a cycle in the package's import graph (function-level imports count)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(GRAPH.get(m, ())):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, m, n])
            if n in GRAPH and n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [])


def test_no_module_goes_through_the_package_facade() -> None:
    # kit.claims.audit/__init__ imports the runner, so a module importing the facade closes a cycle
    assert {m: g for m, g in GRAPH.items() if "__init__" in g} == {}


@pytest.mark.parametrize("module", RULE_MODULES)
def test_rule_families_import_only_the_toolbox_and_the_registry(module: str) -> None:
    assert GRAPH[module] <= TOOLBOX | {"findings", "registry"}, GRAPH[module]


def test_the_registry_and_the_toolbox_are_below_the_rules() -> None:
    assert GRAPH["registry"] <= {"claim", "findings"}
    assert GRAPH["findings"] <= {"claim"}
    for m in TOOLBOX:
        assert GRAPH[m] <= TOOLBOX, (m, GRAPH[m])
    assert set(RULE_MODULES) <= GRAPH["runner"]


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter in which ``kit.claims.audit`` is an empty package: its
    ``__init__`` (which imports everything) does not run, so each module is imported on its own."""
    stub = (
        "import sys, types\n"
        f"pkg = types.ModuleType({PACKAGE!r}); pkg.__path__ = [{str(PACKAGE_DIR)!r}]\n"
        f"sys.modules[{PACKAGE!r}] = pkg\n"
    )
    return subprocess.run([sys.executable, "-c", stub + code], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    res = _fresh(f"import {PACKAGE}.{module}")
    assert res.returncode == 0, res.stderr[-2000:]


def test_the_registry_is_a_leaf_and_the_runner_fills_it() -> None:
    res = _fresh(
        f"from {PACKAGE}.registry import RULES\n"
        "print(len(RULES))\n"
        f"import {PACKAGE}.runner\n"
        "print(len(RULES), ','.join(sorted({r.family for r in RULES.values()})))\n"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    alone, filled = res.stdout.splitlines()
    assert alone == "0"  # importing the registry imports no rule
    count, families = filled.split()
    assert int(count) == len(audit_pkg.RULES) >= 50
    assert families == "arithmetic,consistency,method,physics,placeholders,provenance,statistics"


def test_the_package_exports_a_complete_registry() -> None:
    res = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE} as a; print(len(a.RULES), len(a.load_rules()))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == [str(len(audit_pkg.RULES))] * 2


BROAD = {"Exception", "BaseException"}


def _handler_names(handler: ast.ExceptHandler) -> set[str]:
    if handler.type is None:
        return {"<bare>"}
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return {t.id if isinstance(t, ast.Name) else ast.unparse(t) for t in types}


@pytest.mark.parametrize("module", [*MODULES, "__init__"])
def test_no_kit_import_is_guarded_and_no_broad_except_hides_a_bug(module: str) -> None:
    """The kit's own modules are imported plainly (a bug there fails loudly); the one broad
    ``except`` of the package is the runner's, which turns a failing rule into an error finding."""
    broad: list[str] = []
    for node in ast.walk(_tree(module)):
        if not isinstance(node, ast.Try):
            continue
        for inner in (n for stmt in node.body for n in ast.walk(stmt)):
            if isinstance(inner, ast.ImportFrom) and (inner.module or "").split(".")[0] == "kit":
                pytest.fail(f"{module}:{inner.lineno}: import of {inner.module} inside try")
            if isinstance(inner, ast.Import) and any(a.name.split(".")[0] == "kit" for a in inner.names):
                pytest.fail(f"{module}:{inner.lineno}: import of the kit inside try")
        broad += [f"{module}:{h.lineno}" for h in node.handlers if _handler_names(h) & (BROAD | {"<bare>"})]
    if module == "runner":
        assert len(broad) == 1, broad  # run_rule's: a failing rule is an error finding
    else:
        assert broad == []
