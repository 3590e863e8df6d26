"""Imports run one way through the layers the README names: foundation (configs, data, models, formatting,
generation), then rewards, then evaluation, then training (trainers, methods, recipes, stages), then the CLI.

No module imports one of a higher layer, the project's import graph has no cycle, and project imports inside
functions (which would hide a cycle) appear only in the CLI, which defers them to start quickly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
PACKAGES = ("posttrain", "rewards", "eval")

# Layer of each module, by the longest matching prefix.
LAYERS = {
    "posttrain": 0,
    "posttrain.paths": 0,
    "posttrain.logs": 0,
    "posttrain.packages": 0,
    "posttrain.configs": 0,
    "posttrain.data": 0,
    "posttrain.models": 0,
    "posttrain.rollout": 0,
    "posttrain.plots": 0,
    "posttrain.formatting": 0,
    "posttrain.parsing": 0,
    "posttrain.templates": 0,
    "posttrain.renames": 0,
    "posttrain.jsonl": 0,
    "posttrain.generation": 0,
    "posttrain.sandbox": 0,
    "rewards": 1,
    "eval": 2,
    "posttrain.trainers": 3,
    "posttrain.methods": 3,
    "posttrain.recipe": 3,
    "posttrain.stages": 3,
    "posttrain.train": 3,
    "posttrain.checkpoints": 3,
    "posttrain.cli": 4,
    "posttrain.__main__": 4,
}
NAMES = ("foundation", "rewards", "evaluation", "training", "cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"module {module} has no layer; add it to LAYERS (and to the README's list)")
    return LAYERS[best]


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def project_imports(tree: ast.AST, known: set[str]) -> list[tuple[ast.AST, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{node.module}.{alias.name}"
                found.append((node, sub if sub in known else node.module))
        elif isinstance(node, ast.Import):
            found += [(node, a.name) for a in node.names if a.name.split(".")[0] in PACKAGES]
    return found


def local_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(sub) for sub in ast.walk(node) if sub is not node}
    return inside


def graph() -> tuple[dict[str, set[str]], list[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    local: list[str] = []
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        inside = local_nodes(tree)
        for node, target in project_imports(tree, set(known)):
            edges[name].add(target)
            if id(node) in inside and layer(name) < 4:
                local.append(f"{name} imports {target} inside a function (line {node.lineno})")
    return edges, local


def test_no_module_imports_a_higher_layer():
    edges, _ = graph()
    upward = [
        f"{src} ({NAMES[layer(src)]}) imports {dst} ({NAMES[layer(dst)]})"
        for src, targets in edges.items()
        for dst in targets
        if layer(dst) > layer(src)
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    edges, _ = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


def test_project_imports_inside_functions_only_in_the_cli():
    _, local = graph()
    assert not local, "\n".join(local)


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)
