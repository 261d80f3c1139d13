"""The house rules: imports go one way, no module imports itself back, no binaries tracked.

The graph counts every import: at the top of a module, inside a function (a lazy import
that closes a circle is still a circle) and under ``if TYPE_CHECKING:`` (a module that needs
another's types to be written cannot be built or tested without it either).
"""

from __future__ import annotations

import ast
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# What each package may import besides itself (README, "Development"). ``cli`` may import
# anything and nothing imports it; the adapters are reached only through core.providers.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "cloud": {"base"},
    "cfn": {"base"},
    "packer": {"base"},
    "etherpad": {"base"},
    "measure": {"base", "etherpad"},
    "report": {"base", "cloud", "cfn", "measure", "etherpad"},
    "aws": {"base", "cloud", "packer", "etherpad"},
    "localcloud": {"base", "cloud", "cfn", "packer", "appspec", "etherpad"},
    "appspec": {"base"},
    "strategies": {"base", "cloud", "etherpad", "core.strategy"},
    "core": {"base", "cloud", "cfn", "packer", "appspec", "etherpad", "measure", "report"},
    "__main__": {"cli"},
    "cli": {"*"},
}
# The one place the core reaches the adapters: choosing one.
ADAPTER_GATE = "deployer.core.providers"

MAX_MODULES_PER_PACKAGE = 12
MAX_MODULE_LINES = 600
# Modules allowed past MAX_MODULE_LINES, each with the reason in its docstring too.
LONG_MODULES: dict[str, str] = {}
# Debt being paid off under issue 10; each entry goes when its fix lands.
KNOWN_CIRCLES: list[list[str]] = []
KNOWN_WRONG_WAY: set[str] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in [*REPO.glob("deployer/**/*.py"), *REPO.glob("strategies/*.py")]:
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in modules:
                    found.add(full)
                elif node.module in modules:
                    found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "strategies":
        return "strategies"
    return parts[1] if len(parts) > 1 else "deployer"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
                result.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return result


def test_no_module_imports_itself_back() -> None:
    assert [c for c in _cycles(_graph()) if c not in KNOWN_CIRCLES] == []


def test_imports_go_one_way() -> None:
    wrong = []
    for module, imported in sorted(_graph().items()):
        source = _package(module)
        allowed = ALLOWED.get(source, set())
        for target in sorted(imported):
            target_package = _package(target)
            if target_package in (source, "deployer") or "*" in allowed:
                continue
            if target_package in allowed or any(
                    target == f"deployer.{a}" or target.startswith(f"deployer.{a}.")
                    for a in allowed if "." in a):
                continue
            if module == ADAPTER_GATE and target_package in ("aws", "localcloud"):
                continue
            wrong.append(f"{module} -> {target}")
    assert [w for w in wrong if w not in KNOWN_WRONG_WAY] == []


def test_nothing_imports_the_cli() -> None:
    importers = [m for m, imported in _graph().items()
                 if _package(m) != "cli" and m != "deployer.__main__"
                 and any(_package(t) == "cli" for t in imported)]
    assert importers == []


def test_packages_stay_small_enough_to_read() -> None:
    crowded = {}
    for folder in [*REPO.glob("deployer/**/"), REPO / "strategies"]:
        if folder.name == "__pycache__" or not (folder / "__init__.py").exists():
            continue
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        if count > MAX_MODULES_PER_PACKAGE:
            crowded[str(folder.relative_to(REPO))] = count
    assert crowded == {}


def test_long_modules_say_why() -> None:
    long = {}
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES and name not in LONG_MODULES:
            long[name] = lines
    assert long == {}


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_no_tracked_file_is_a_binary_download() -> None:
    """Wheels, tarballs and caches do not belong in the repository: nothing over 1 MB."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    sizes = defaultdict(int)
    for name in filter(None, tracked):
        path = REPO / name
        if path.is_file():
            sizes[name] = path.stat().st_size
    assert [n for n, size in sizes.items() if size > 1024 * 1024] == []
