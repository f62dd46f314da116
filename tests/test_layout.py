"""The layout's rules, read from the source: the engine never imports the work, modules
stay small, no two modules share a name, and the ledger's signatures are typed."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "jobs")


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Every module name an `import` or `from ... import` in `path` names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_engine_never_imports_the_work() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name for name in _imported(path) if name == "jobs" or name.startswith("jobs.")
        )
        for path in _modules("service")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_tasks_use_only_the_public_task_api() -> None:
    """Task modules reach the service through `service.task_api` alone."""
    for path in _modules("jobs"):
        reached = {name for name in _imported(path) if name.split(".")[0] == "service"}
        outside = {name for name in reached if not name.startswith("service.task_api")}
        assert outside == set(), path.name


def test_modules_stay_small() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for package in PACKAGES
        for path in _modules(package)
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


def test_no_two_modules_share_a_file_name() -> None:
    seen: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in _modules(package):
            if path.name != "__init__.py":
                seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_the_ledger_signatures_name_their_types() -> None:
    """No `Any` in a parameter or return annotation of the ledger's functions."""
    tree = ast.parse((ROOT / "service" / "ledger.py").read_text())
    loose = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations = [a.annotation for a in node.args.args + node.args.kwonlyargs]
            for annotation in [*annotations, node.returns]:
                if annotation is not None and "Any" in ast.unparse(annotation):
                    loose.append(node.name)
    assert loose == []
