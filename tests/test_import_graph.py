"""The import graph of core/ and studio/ runs one way (docs/architecture.md, "Import graph").

Built from the source (every module's absolute ``core.``/``studio.`` imports, read with ``ast``), so it checks
every module in a fraction of a second instead of starting an interpreter per module. Every import counts: one
inside a function still runs, so it can close a loop as surely as one at the top (a reader sees it either way);
and importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first, so those count as imported too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for package in ("core", "studio"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path, lazy: bool) -> set[str]:
    """Names imported by ``path``: at module level only, or (``lazy``) inside functions too. Imports under
    ``if TYPE_CHECKING:`` never run and are left out."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.orelse:
                    visit_one(stmt)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if lazy:
                    visit(child)
            else:
                visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
        else:
            visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _with_parents(names: set[str]) -> set[str]:
    """``names`` and the packages above each (importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    out = set(names)
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return out


def _graph(lazy: bool = True) -> dict[str, set[str]]:
    """module -> the project modules it imports. A module's own parent packages are left out: Python imports
    them before the module itself, so such an edge can never start a cycle."""
    return {name: {dep for dep in _with_parents(_imports(path, lazy)) if dep in MODULES and dep != name
                   and not name.startswith(dep + ".")}
            for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_counting_the_imports_inside_functions():
    """Every module imports alone: no module is (directly or through others) imported by what it imports."""
    assert _cycles(_graph()) == []


# The floors of core, ground first (docs/architecture.md, "Import graph"): a module imports from its own floor or
# below, never above. A name matches a module and everything under it; the longest match wins.
FLOORS = (
    # 0: plain facts and helpers that know nothing of training: event fields, process identity, tokenizer files,
    #    the tools, launch targets, and the configs the method registry reads (model, method options, errors)
    ("core.event_schema", "core.process_identity", "core.safety", "core.llama_load", "core.tools",
     "core.tokenizer", "core.launch", "core.config", "core"),
    ("core.data",),                                          # 1: records (the kinds), datasets, cache
    ("core.methods",),                                       # 2: the method registry
    ("core.config.train", "core.config.load", "core.model"),  # 3: the training schema (asks the registry), model
    ("core.infer", "core.export"),                           # 4: generation, export
    ("core.rl", "core.serve"),                               # 5: rollouts and rewards, the HTTP server
    ("core.eval",),                                          # 6: benchmarks (score with generation and rewards)
    ("core.train", "core.demo", "core.sweep"),               # 7: the engine and recipes; the demo; sweeps
    ("core.cli", "core.__main__"),                           # 8: the command line
)


def _floor(module: str) -> int:
    best, floor = -1, None
    for level, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, floor = len(name), level
    assert floor is not None, f"{module} is on no floor: add it to FLOORS"
    return floor


def test_no_arrow_runs_up_in_core():
    """Each core module imports only from its own floor or below, so the layers read bottom-up."""
    graph = _graph()
    up = sorted((name, dep) for name, deps in graph.items() if name.startswith("core")
                for dep in deps if dep.split(".")[0] == "core" and _floor(dep) > _floor(name))
    assert up == []


def test_core_never_imports_the_studio_or_qt():
    offenders = {name: sorted(dep for dep in _imports(path, lazy=True)
                              if dep.split(".")[0] in ("studio", "PySide6", "pyqtgraph"))
                 for name, path in MODULES.items() if name.split(".")[0] == "core"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_store_never_imports_the_worker():
    """studio.store (SQLite, run folders) sits below studio.worker (processes, threads), lazily or not."""
    offenders = {name: sorted(dep for dep in _imports(path, lazy=True) if dep.startswith("studio.worker"))
                 for name, path in MODULES.items() if name.startswith("studio.store")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_graph_sees_the_imports():
    """The checks above are only as good as the graph: it must see a real edge and a planted cycle."""
    assert "studio.store" in _graph(lazy=False)["studio.worker.run_manager"]
    assert "core.infer.backend_base" in _graph(lazy=False)["core.infer.llamacpp"]
    assert "core.methods" in _graph()["core.config.train"]  # an import inside a function counts
    assert "core.config" in _graph()["core.methods"]  # and so does the package above what it imports
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_event_schema_imports_without_torch_pydantic_or_qt():
    """The studio's store and the stand-in trainer read the schema; it must stay light."""
    code = ("import sys, core.event_schema, core.train.events; "
            "print(sorted(m for m in ('torch', 'pydantic', 'PySide6') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
