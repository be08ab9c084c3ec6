"""The README stays true: CI runs its test command, and its examples run."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    setup = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    test_command = setup[1].split("#")[0].strip()
    assert test_command == "python3 -m pytest -q -n 2"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == test_command


def test_first_example_runs_and_checks_itself() -> None:
    result = subprocess.run(
        [sys.executable, "examples/vector_add.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "backend:" in result.stdout


# Snippets that use an optional extra run where it is installed (CI installs them all).
OPTIONAL_MODULES = ("mlx_lm", "coremltools")
SNIPPETS = [
    snippet
    for snippet in re.findall(r"```python\n(.*?)```", README, re.S)
    if "add_kernel[grid].functional" not in snippet  # a one-line fragment that continues the first
]


@pytest.mark.parametrize("number", range(len(SNIPPETS)))
def test_readme_python_snippets_run(tmp_path: Path, number: int) -> None:
    snippet = SNIPPETS[number]
    for module in OPTIONAL_MODULES:
        if (
            re.search(rf"^\s*(import|from) {module}\b", snippet, re.M)
            and importlib.util.find_spec(module) is None
        ):
            pytest.skip(f"README snippet {number} needs {module}, which is not installed")
    script = tmp_path / f"snippet_{number}.py"
    script.write_text(snippet)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, f"README snippet {number} failed:\n{snippet}\n{result.stderr}"


def _module_imports(package: Path) -> dict[str, set[str]]:
    """For each module of `package`, the package's modules its top level imports (not imports
    inside functions, nor under `if TYPE_CHECKING:`)."""
    root = package.parent
    modules = {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for path in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                parts = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(parts[: len(parts) - node.level + 1] if node.level else [])
                target = ".".join(p for p in (base, node.module or "") if p)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    graph[name].add(sub if sub in modules else target)
        graph[name] &= modules.keys()
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

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
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


# The layers of `mtriton`, lowest first (docs/architecture.md); a module imports its own layer or
# lower ones only.
LAYERS = (
    ("errors", "version", "targets"),
    ("options",),
    ("cache", "memory"),
    ("ir",),
    ("dtypes", "float8"),
    ("language",),
    ("frontend", "passes", "interpreter"),
    ("emulator",),
    ("backends",),
    ("runtime",),
    ("testing", "cli"),
    ("", "__main__"),
)


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_the_compiler_imports_in_one_direction() -> None:
    graph = _module_imports(ROOT / "mtriton")
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m))
    assert not upward, upward
    # The one circle left is Triton's own: tensor methods build ops, and ops return tensors.
    assert _cycles(graph) == [{"mtriton.language.core", "mtriton.language.semantic"}]
    outside = {d for m, deps in graph.items() if m.startswith("mtriton.emulator") for d in deps}
    assert {d for d in outside if not d.startswith("mtriton.emulator")} <= {"mtriton.options"}


def test_every_package_folder_ships_in_the_wheel() -> None:
    """pyproject lists the packages by hand (mlx_primitives lives in primitives/): a folder with
    an __init__.py missing from that list imports in an editable install and is absent from
    a wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: ROOT / path for name, path in setuptools["package-dir"].items()}
    folders.setdefault("mtriton", ROOT / "mtriton")
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            if not any(p.startswith((".", "_")) or p == "tests" for p in parts):
                found.add(".".join((name, *parts)))
    assert sorted(found - set(setuptools["packages"])) == []
