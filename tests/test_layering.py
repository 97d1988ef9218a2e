"""Imports flow one way (DESIGN.md §2): every import of the package, lazy ones inside functions and those
under TYPE_CHECKING included, goes from a floor to the same floor or one below it.

The floors, bottom up (the README's Development section lists them too). A unit is a top-level module or
package of ``sparc_eval``; the pretraining package is split into its low floor (what the ``sparc:``
loader uses) and the training loop above the API.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sparc_eval"

FLOORS: list[tuple[str, set[str]]] = [
    ("floor 0", {"sparc_eval", "errors", "fileio", "params", "names", "yamlio", "task_config", "registry",
                 "checkpoint_io", "distributed", "open_clip_configs", "hub", "download", "clip_benchmark_names",
                 "progress"}),
    ("text", {"text"}),
    ("metrics", {"metrics"}),
    ("data", {"data"}),
    ("results", {"results"}),
    ("pretrain low floor", {"pretrain", "pretrain.model", "pretrain.losses", "pretrain.checkpoint"}),
    ("models", {"models"}),
    ("engine, transfer, captioner", {"engine", "transfer", "captioner"}),
    ("shared task helpers", {"task_common"}),
    ("task types", {"task_types"}),
    ("tasks", {"tasks"}),
    ("api", {"api"}),
    ("training loop", {"pretrain.config", "pretrain.data", "pretrain.train", "pretrain.distributed"}),
    ("cli", {"cli"}),
    ("entry points", {"__main__", "pretrain.__main__"}),
]
FLOOR_OF = {unit: i for i, (_, units) in enumerate(FLOORS) for unit in units}
# results may use the metric registry and the control statistics (numpy only) and nothing else of the
# metrics floor (and never torch)
NARROW = {"results": {"metrics": {"sparc_eval.metrics.registry", "sparc_eval.metrics.controls"}}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "sparc_eval"
    if parts[0] == "pretrain" and len(parts) > 1:
        return f"pretrain.{parts[1]}"
    return parts[0]


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import of ``sparc_eval`` in the file of ``module``, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "sparc_eval":
                for alias in node.names:  # `from . import x` may name a submodule
                    sub = f"{target}.{alias.name}"
                    out.append((node.lineno, sub if (PACKAGE.parent / Path(*sub.split("."))).exists()
                                or (PACKAGE.parent / (Path(*sub.split(".")).as_posix() + ".py")).exists()
                                else target))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sparc_eval"]
    return sorted(out)


def violations(files: list[tuple[Path, str]]) -> list[str]:
    """Every import against the floors in ``files`` ((path, module name) pairs)."""
    found = []
    for path, src in files:
        a = unit(src)
        assert a in FLOOR_OF, f"{path}: unit {a!r} is on no floor; add it to FLOORS (and the README)"
        for line, target in imports(path, src):
            b = unit(target)
            assert b in FLOOR_OF, f"{path}:{line}: imports {target}, whose unit {b!r} is on no floor"
            rel = src
            if FLOOR_OF[b] > FLOOR_OF[a]:
                found.append(f"{rel}:{line}: {a} ({FLOORS[FLOOR_OF[a]][0]}) imports {target} "
                             f"({FLOORS[FLOOR_OF[b]][0]}), a floor above")
            allowed = NARROW.get(a, {}).get(b)
            if allowed is not None and target not in allowed:
                found.append(f"{rel}:{line}: {a} may import only {sorted(allowed)} of {b}, not {target}")
    return found


def test_every_import_flows_down_the_floors():
    assert violations([(p, module_name(p)) for p in sorted(PACKAGE.rglob("*.py"))]) == []


def test_the_checker_sees_lazy_and_type_checking_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..api import evaluate\n"
                     "def f():\n    from ..cli import main\n    import sparc_eval.tasks\n"
                     "from ..results import store\nfrom ..errors import DataError\n", encoding="utf-8")
    found = violations([(probe, "sparc_eval.metrics.probe")])
    assert [v.split(" imports ")[1].split(" ")[0] for v in found] == [
        "sparc_eval.api", "sparc_eval.cli", "sparc_eval.tasks", "sparc_eval.results.store"]
    narrow = tmp_path / "narrow.py"
    narrow.write_text("from ..metrics.registry import get\nfrom ..metrics.retrieval import recall\n", encoding="utf-8")
    assert [v.split(": ", 1)[1] for v in violations([(narrow, "sparc_eval.results.narrow")])] == [
        "results may import only ['sparc_eval.metrics.controls', 'sparc_eval.metrics.registry'] of metrics, not "
        "sparc_eval.metrics.retrieval"]


def test_results_never_import_torch():
    for path in (PACKAGE / "results").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n.split(".")[0] == "torch" for n in names), f"{path}:{node.lineno} imports torch"
