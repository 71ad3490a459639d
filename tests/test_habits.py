"""The habits, checked like tests: ruff (lint and format), the import-linter contracts and
mypy, each with its configuration in pyproject.toml, each run from the repository root by
the tool of the venv this test runs in. A failure shows the tool's own report.

And one proof that the layering contract is not vacuous: the repository's own contracts,
copied beside a throw-away tree of the same packages, report an upward import by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LAYERS = next(c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers")


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: pip install -e '.[dev]'")
    return path


def run(args: list[str | Path], cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"`{' '.join(proc.args)}` exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize(
    "args",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["lint-imports", "--no-logo"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "lint-imports", "mypy"],
)
def test_the_tree_keeps_the_habit(args):
    proc = run([tool(args[0]), *args[1:]])
    if proc.returncode != 0:
        pytest.fail(report(proc), pytrace=False)


# ------------------------------------------------------------ the contract can fail


def toml_value(value: object) -> str:
    """Enough TOML for an import-linter section: strings, booleans and lists of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list):
        return json.dumps(value)  # a JSON string or array of strings is a TOML one
    raise TypeError(f"import-linter config: cannot write {value!r} as TOML")


def importlinter_toml(config: dict) -> str:
    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in config.items() if k != "contracts"]
    for contract in config["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in contract.items()]
    return "\n".join(lines) + "\n"


def fake_tree(root: Path, imports: dict[str, str]) -> None:
    """An empty package for each of the repository's root packages; ``imports``: package ->
    the module its ``__init__`` imports."""
    for package in PYPROJECT["tool"]["importlinter"]["root_packages"]:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f"import {imports[package]}\n" if package in imports else "")


def test_the_layering_contract_reports_an_upward_import(tmp_path):
    (tmp_path / "pyproject.toml").write_text(importlinter_toml(PYPROJECT["tool"]["importlinter"]))
    fake_tree(tmp_path, {"wire": "kubeattention", "agent": "wire"})
    proc = run([tool("lint-imports"), "--no-logo", "--no-cache"], cwd=tmp_path, timeout=60)
    text = " ".join(proc.stdout.split())  # the report wraps long contract names
    assert proc.returncode != 0, report(proc)
    assert f"{LAYERS['name']} BROKEN" in text, report(proc)
    assert "wire -> kubeattention" in text, report(proc)
    assert "Contracts: 3 kept, 1 broken." in text, report(proc)


def test_the_copied_contracts_keep_a_tree_that_imports_down(tmp_path):
    """The control for the test above: the same tree with imports that point down is clean,
    so it is the upward import, not the copy, that breaks the contract."""
    (tmp_path / "pyproject.toml").write_text(importlinter_toml(PYPROJECT["tool"]["importlinter"]))
    fake_tree(tmp_path, {"kubeattention": "controllers", "controllers": "client", "agent": "wire"})
    proc = run([tool("lint-imports"), "--no-logo", "--no-cache"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, report(proc)
