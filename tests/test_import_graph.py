"""The layering of src/protoseg (README "How protoseg is built"): imports go one way, with no circles
(lazy imports inside functions included) and no private names imported from another file."""
from __future__ import annotations

import ast
from pathlib import Path

import protoseg

SRC = Path(protoseg.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) of every protoseg import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names if alias.name.split(".")[0] == "protoseg"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "protoseg":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                # ``from protoseg.models import tiramisu`` imports a module, not a name
                out.append((sub, None, node.lineno) if sub in modules else (node.module, alias.name, node.lineno))
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {target for target, _, _ in _imports(path, modules) if target in modules and target != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (module names), or None."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circles_lazy_imports_included():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_find_cycle_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_names_imported_across_files():
    modules = _modules()
    private = [f"{_module_name(path)}:{line} imports {source}.{name}"
               for path in modules.values()
               for source, name, line in _imports(path, modules)
               if name is not None and name.startswith("_") and name != "__version__"]
    assert not private, "\n".join(private)


# The layers, top to bottom (README "How protoseg is built"): a module imports its own layer or lower ones.
LAYERS = {
    "commands": ("protoseg", "protoseg.__main__", "protoseg.cli", "protoseg.commands"),
    "stages": ("protoseg.sim", "protoseg.importers", "protoseg.images.make", "protoseg.images", "protoseg.training",
               "protoseg.predictor", "protoseg.inference", "protoseg.evaluation", "protoseg.export", "protoseg.display",
               "protoseg.hits.inference"),
    "formats and models": ("protoseg.events", "protoseg.images.grid", "protoseg.images.labels", "protoseg.images.pooling",
                           "protoseg.images.selection", "protoseg.images.imagefile", "protoseg.images.balance",
                           "protoseg.modelcards", "protoseg.loading", "protoseg.models", "protoseg.losses",
                           "protoseg.metrics", "protoseg.data", "protoseg.config", "protoseg.root_friend", "protoseg.predictions",
                           "protoseg.hits"),
    "base": ("protoseg.detector", "protoseg.errors", "protoseg.fileio", "protoseg.progress", "protoseg.version"),
}


def layer_of(module: str) -> int:
    """Index in LAYERS (0 = commands) of the most specific entry that names ``module`` or a package above it."""
    best, depth = None, -1
    for rank, prefixes in enumerate(LAYERS.values()):
        for prefix in prefixes:
            below = module.startswith(prefix + ".") and prefix != "protoseg"  # the package itself: exactly
            if (module == prefix or below) and prefix.count(".") > depth:
                best, depth = rank, prefix.count(".")
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_imports_go_down_the_layers():
    graph = import_graph()
    wrong = [f"{name} ({list(LAYERS)[layer_of(name)]}) imports {target} ({list(LAYERS)[layer_of(target)]})"
             for name, targets in sorted(graph.items()) for target in sorted(targets)
             if layer_of(target) < layer_of(name)]
    assert not wrong, "\n".join(wrong)
