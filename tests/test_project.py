"""The README stays true: CI runs its test command, and its examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_readme_python_snippets_run(tmp_path: Path) -> None:
    for number, snippet in enumerate(re.findall(r"```python\n(.*?)```", README, re.S)):
        if "add_kernel[grid].functional" in snippet:
            continue  # a one-line fragment that continues the first snippet
        script = tmp_path / f"snippet_{number}.py"
        script.write_text(snippet)
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, f"README snippet {number} failed:\n{snippet}\n{result.stderr}"
