"""The layering (docs/DEVELOPING.md "Layers") holds: import-linter's contracts in pyproject.toml.

Runs the venv's ``lint-imports`` so the README's test command enforces the contracts. It reads the
installed package, so a new module file needs ``make install`` first (the test command does it).
"""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gazepref.cli import COMMAND_MODULES

REPO = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in cfg["contracts"]}


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail(f"{lint} is missing: install the test extras (make install-all) to check the layers")
    res = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    report = res.stdout + res.stderr
    assert res.returncode == 0, "a layer contract is broken (fix the import, see docs/DEVELOPING.md):\n" + report
    assert f"{len(_contracts())} kept, 0 broken" in report, report


def test_only_the_command_modules_may_import_the_command_line():
    """The layers contract lets the command modules use gazepref.cli: every area command module
    (core/cli.py COMMAND_MODULES) and the sub-command modules they register (named ``*commands``);
    nothing else gets an exception."""
    layers = _contracts()["layers"]
    ignored = {rule.split(" -> ")[0] for rule in layers["ignore_imports"]}
    assert all(rule.endswith(" -> gazepref.cli") for rule in layers["ignore_imports"])
    assert set(COMMAND_MODULES) <= ignored
    assert all(m.rsplit(".", 1)[-1].endswith("commands") for m in ignored)
    assert layers["layers"][0] == "cli" and layers["containers"] == ["gazepref"] and layers["exhaustive"]
