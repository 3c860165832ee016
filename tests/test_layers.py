"""The import contract of the package: every import (function-level ones included) points down the layer order, and
no set of modules imports itself in a circle."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_unlearn"

# Bottom to top. A module may import modules of its own layer or below; the first matching prefix decides.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("protocol", ("objective", "atomic", "layers", "_logging", "_compat", "papers", "recipes")),
    ("data, models, log-probs", ("data", "models", "logprobs")),
    (
        "objectives and losses",
        (
            "trainers.losses",
            "trainers.retain",
            "callbacks.base",
            "callbacks.rmu",
            "callbacks.attention_shifting",
            "continual.orthogonal",
        ),
    ),
    ("evaluation", ("evaluation",)),
    ("monitoring callbacks", ("callbacks", "search", "sources")),
    ("hub and reports (pure I/O)", ("hub", "report")),
    ("trainers", ("trainers", "registry")),
    ("continual, weight space, references", ("continual", "task_arithmetic", "references", "unlearned")),
    ("scripts and CLI", ("scripts", "cli", "")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> int:
    best, index = -1, len(LAYERS) - 1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or prefix == "") and len(prefix) > best:
                best, index = len(prefix), i
    return index


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if module else []
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.startswith("hf_unlearn"):
                target = node.module.removeprefix("hf_unlearn").lstrip(".")
            else:
                continue
            names = [f"{target}.{a.name}" if target else a.name for a in node.names]
            candidates = [n for n in names if n in modules] or [target]
        elif isinstance(node, ast.Import):
            candidates = [
                a.name.removeprefix("hf_unlearn").lstrip(".") for a in node.names if a.name.startswith("hf_unlearn")
            ]
        else:
            continue
        for target in candidates:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != module:
                found.add(target)
    # a package re-exporting its own children is not an arrow of design
    return {t for t in found if not (is_package and t.startswith(module + "." if module else ""))}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_every_import_points_down_the_layers():
    back = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, targets in sorted(_graph().items())
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert not back, "imports that run back up the layers:\n" + "\n".join(back)


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_contract_sees_function_level_imports():
    graph = _graph()
    # unlearned.load_unlearned imports continual inside the function: the walk must see it for the layers to mean
    # anything.
    assert "continual" in graph["unlearned"] or "continual.model" in graph["unlearned"]


def test_the_trainer_base_stays_a_room_one_can_hold():
    """Guards the split of the trainer's machinery by responsibility (config, forward, reference, accumulation, guards,
    input tables, card, publishing, seams, state): a new job goes to its module, not back into base.py."""
    assert len((PACKAGE / "trainers" / "base.py").read_text().splitlines()) <= 350
