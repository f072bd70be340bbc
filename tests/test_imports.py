"""The package's layers: each subpackage imports only from the layers below it (or from
itself), no engine imports another engine, and no two modules import each other in a
cycle, counting the imports made inside functions (a cycle hidden that way still ties
the modules together)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "harness"

# Lowest first: a module may import its own layer and those before it. Data flows
# task file -> prompts -> requests -> outputs -> records -> scores -> reports; the
# metric registry sits low because a task file names its metrics and the records carry
# their scores.
LAYERS = [
    {"errors", "common"},
    {"scoring"},
    {"tasks"},
    {"engines"},
    {"records"},
    {"reports"},
    {"runs"},
    {"tools"},
    {"api", "cli", "__init__"},  # the faces
]
ENGINES = "engines"  # engines.<name> subpackages never import one another


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, at any depth, less those for type hints
    only (under ``if TYPE_CHECKING:``), as dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hinted = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
              and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
              for node in ast.walk(block)}
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in hinted:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "harness":
                continue
            for alias in node.names:  # a module by name, else the module it comes from
                name = f"{module}.{alias.name}"
                found.add(name if name in modules else module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "harness")
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports(path, set(modules)) if m in modules} - {name}
            for name, path in modules.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{module}: in no layer; add its package to LAYERS")


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_walk_sees_relative_absolute_and_lazy_imports(tmp_path) -> None:
    edges = graph()
    assert "harness.engines.contract" in edges["harness.runs.runner"]
    assert "harness.engines.models" in edges["harness.runs.pipeline"]  # a lazy one


def test_the_package_has_no_import_cycle() -> None:
    edges = graph()
    # a package's __init__ re-exporting its modules is not a cycle with them
    modules = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in edges.items()}
    assert find_cycle(modules) is None, " -> ".join(find_cycle(modules) or [])


def test_every_module_but_the_faces_sits_in_a_subpackage() -> None:
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "cli", "api", "errors"}
    assert not loose, f"modules outside a subpackage: {sorted(loose)}"


def test_imports_point_down_the_layers() -> None:
    wrong = [f"{m} -> {d}" for m, deps in graph().items() for d in deps
             if layer_of(d) > layer_of(m)]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_engine_imports_another() -> None:
    def engine(module: str) -> str | None:
        parts = module.split(".")
        is_engine = len(parts) > 3 and parts[1] == ENGINES
        return parts[2] if is_engine else None

    wrong = [f"{m} -> {d}" for m, deps in graph().items() for d in deps
             if engine(m) and engine(d) and engine(m) != engine(d)]
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("layer", [sorted(layer)[0] for layer in LAYERS[1:-1]])
def test_each_layer_is_a_package(layer: str) -> None:
    assert (PACKAGE / layer / "__init__.py").is_file()
