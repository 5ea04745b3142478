"""The module graph: no import cycles among dpda modules, no import from a higher layer, and the
analysis package free of dpda, torch and Ray. Read from the source (every import statement,
including the lazy ones inside functions), so a cycle cannot hide behind a deferred import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower layers never import higher ones; a module may import its own layer and any below it.
LAYERS: list[tuple[str, ...]] = [
    ("dpda", "dpda.errors", "dpda.console", "dpda.dotted", "dpda.yaml_io", "dpda.install", "dpda._torchaudio"),
    ("dpda.data", "dpda.augment", "dpda.align", "dpda.metrics", "dpda.models", "dpda.telemetry"),
    ("dpda.train",),
    ("dpda.tune",),
    ("dpda.commands", "dpda.cli"),
]


def _modules(source_root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((source_root / package).rglob("*.py")):
        parts = path.relative_to(source_root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
            names.add(node.module)
    return names


def import_graph(source_root: Path, package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports (a name resolves to its longest module)."""
    modules = _modules(source_root, package)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        deps = {resolve(n) for n in _imports(path) if n == package or n.startswith(package + ".")}
        # importing `a.b.c` runs `a.b`'s __init__ first: a package's own parents are not edges
        graph[module] = {d for d in deps if d and d != module and not module.startswith(d + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_of(module: str) -> int:
    best, level = -1, None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{module} is in no layer of tests/test_architecture.py"
    return level


def test_finder_sees_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg import a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_no_import_cycles_among_dpda_modules() -> None:
    graph = import_graph(ROOT / "platform", "dpda")
    assert len(graph) > 60
    assert find_cycles(graph) == []


def test_no_module_imports_a_higher_layer() -> None:
    graph = import_graph(ROOT / "platform", "dpda")
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))
    assert upward == []


@pytest.mark.parametrize("forbidden", ["dpda", "torch", "ray"])
def test_analysis_package_imports_no_trainer_torch_or_ray(forbidden: str) -> None:
    for module, path in _modules(ROOT / "analysis", "dpda_analysis").items():
        bad = {n for n in _imports(path) if n == forbidden or n.startswith(forbidden + ".")}
        assert not bad, f"{module} imports {sorted(bad)}"


def test_analysis_modules_are_imported_by_their_names() -> None:
    """No one-letter aliases (`queries as Q`, `schema as S`): a reader sees which module a name
    comes from without looking up the import."""
    for module, path in _modules(ROOT / "analysis", "dpda_analysis").items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                short = [a.asname for a in node.names if a.asname is not None and len(a.asname) == 1]
                assert not short, f"{module}: imports a module as {short[0]!r}"
