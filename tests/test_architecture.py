"""The house rules of ARCHITECTURE.md, checked on the source: one-way imports, small files.

Every import is read from the syntax tree, also the ones inside functions (posekit imports
heavy modules lazily, and a lazy import that runs "upwards" is still a loop). Strings in the
packages' lazy-export tables and the model-type registry's predictor paths are not imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "posekit"

#: The parts, lowest first: a module may import from its own part and from parts before it.
LAYERS = [
    ("base", ["errors", "_lazy", "io"]),
    ("config", ["config"]),
    ("nn", ["architectures", "heads"]),
    ("model", ["model", "optimize"]),
    ("data", ["data"]),
    ("ops", ["ops"]),
    ("export", ["export"]),
    ("inference", ["inference"]),
    ("tracking", ["tracking"]),
    ("evaluation", ["evaluation", "mask_evaluation", "visualization"]),
    ("training", ["training"]),
    ("cli", ["cli", "__main__"]),
]
RANK = {top: i for i, (_, tops) in enumerate(LAYERS) for top in tops}
PART = {top: name for name, tops in LAYERS for top in tops}
MAX_LINES = 700


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every posekit module `path` imports (absolute names), with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("posekit")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("posekit"):
                continue
            found.append((mod, node.lineno))
            for a in node.names:  # `from posekit.x import y` where y is a submodule
                sub = SRC.parent / Path(*f"{mod}.{a.name}".split("."))
                if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                    found.append((f"{mod}.{a.name}", node.lineno))
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_top_level_module_has_a_part():
    tops = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in _sources()}
    tops.discard("__init__")
    assert tops <= set(RANK), f"modules without a part in LAYERS: {sorted(tops - set(RANK))}"


def test_imports_only_run_down_the_layers():
    bad = []
    for path in _sources():
        src_top = _top(_module_name(path))
        if not src_top:  # posekit/__init__.py: lazy table only
            continue
        for mod, line in _imports(path):
            dst_top = _top(mod)
            if not dst_top or dst_top == src_top:
                continue
            if RANK[dst_top] >= RANK[src_top] and PART[dst_top] != PART[src_top]:
                bad.append(f"{path.relative_to(SRC)}:{line} ({PART[src_top]}) imports {mod}")
    assert not bad, "imports that run up or across the layers:\n" + "\n".join(bad)


def test_no_import_loop_between_files():
    graph: dict[str, set[str]] = {}
    for path in _sources():
        me = _module_name(path)
        graph[me] = {m for m, _ in _imports(path) if m != me}
    known = set(graph)
    for me in graph:
        graph[me] = {m for m in graph[me] if m in known and not _is_package_of(m, me)}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif state.get(nxt) is None:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [node])
    assert not cycles, "import loops:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _is_package_of(package: str, module: str) -> bool:
    """`posekit.x` imported by `posekit.x.y`: the package's __init__ only holds lazy tables."""
    return module.startswith(package + ".")


def test_the_never_rules():
    """Networks know no labels or trainer; prediction and tracking no training; no CLI."""
    bad = []
    for path in _sources():
        me = _module_name(path)
        top = _top(me)
        tree = ast.parse(path.read_text())
        third_party = {
            (a.name if isinstance(n, ast.Import) else (n.module or "")).split(".")[0]
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom) and not getattr(n, "level", 0)
            for a in (n.names if isinstance(n, ast.Import) else [n])
        }
        posekit_tops = {_top(m) for m, _ in _imports(path)}
        if top in ("architectures", "heads") and third_party & {"sleap_io", "lightning"}:
            bad.append(f"{me}: a network module imports labels or trainer code")
        if top in ("inference", "tracking") and (
            "training" in posekit_tops or "lightning" in third_party
        ):
            bad.append(f"{me}: prediction/tracking imports training code")
        if top != "cli" and "cli" in posekit_tops:
            bad.append(f"{me}: a library module imports the CLI")
    assert not bad, "\n".join(bad)


def test_configs_import_no_torch():
    code = (
        "import sys, posekit.config.job, posekit.config.model, posekit.config.overrides;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_source_files_stay_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(SRC)} has {n} lines (at most {MAX_LINES})"
