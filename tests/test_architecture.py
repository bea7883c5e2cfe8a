"""The shape of the package: no import cycles, arrows point down, every error in the tree."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import lamina
from lamina import errors
from lamina.errors import LaminaError

SRC = Path(lamina.__file__).parent

# Lower layers never import higher ones (../shared/DESIGN.md). A module may import its own
# layer and anything listed after it. `evals`, `tuning` and `testing` (test doubles and
# contract suites) sit beside the stack: nothing in the stack imports them.
LAYERS: list[tuple[str, ...]] = [
    ("lamina.cli", "lamina.server", "lamina.__main__"),
    ("lamina.evals", "lamina.tuning", "lamina.doctor", "lamina.testing"),
    ("lamina.agents", "lamina.rag", "lamina.apps", "lamina.feedback"),
    ("lamina.retrieval", "lamina.prompts", "lamina.tools"),
    ("lamina.models",),
    (
        "lamina.types",
        "lamina.errors",
        "lamina.settings",
        "lamina.telemetry",
        "lamina.registry",
        "lamina.jsonschemas",
    ),
]
# The package root re-exports the public API of the core and the model layer.
ROOT_MODULE = "lamina"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, name: str, *, top_level_only: bool) -> Iterator[str]:
    """The lamina modules ``name`` imports (resolving ``from pkg import submodule``)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lamina"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if not module.startswith("lamina"):
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield sub if sub in MODULES else module


def _layer(module: str) -> int | None:
    for rank, group in enumerate(LAYERS):
        if any(module == g or module.startswith(g + ".") for g in group):
            return rank
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = {
        name: {m for m in _imports(path, name, top_level_only=True) if m != name}
        for name, path in MODULES.items()
    }
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue  # a package importing its own submodules is not a cycle
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt in graph and not state.get(nxt):
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if not state.get(name):
            visit(name)


def test_arrows_point_down() -> None:
    """Lazy imports inside functions count too: they are dependencies all the same."""
    wrong = []
    for name, path in MODULES.items():
        if name == ROOT_MODULE:
            continue
        rank = _layer(name)
        assert rank is not None, f"{name} belongs to no layer: add it to LAYERS"
        for imported in _imports(path, name, top_level_only=False):
            target = _layer(imported)
            if imported != ROOT_MODULE and target is not None and target < rank:
                wrong.append(f"{name} imports {imported}")
    assert not wrong, "a lower layer imports a higher one:\n" + "\n".join(sorted(set(wrong)))


def _all_error_classes() -> set[type[LaminaError]]:
    for info in pkgutil.walk_packages(lamina.__path__, "lamina."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
    found: set[type[LaminaError]] = set()
    todo: list[type[LaminaError]] = [LaminaError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {c for c in found if c.__module__.startswith("lamina")}


def test_every_error_class_is_in_the_tree() -> None:
    tree = inspect.getdoc(errors) or ""
    missing = sorted(c.__name__ for c in _all_error_classes() if c.__name__ not in tree)
    assert not missing, f"add these to the tree in lamina/errors.py's docstring: {missing}"
