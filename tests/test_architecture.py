"""The rules of the house, checked by the build (docs/architecture.md): the import contracts
of pyproject.toml hold for the package, and each kind of breach planted in a temporary copy
of it makes the check fail, so the check cannot pass by looking at nothing. The wall clock
rule is ruff's banned-api, tried the same way; module size and the engine's purity too."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "storsync"
BIN = Path(sys.executable).parent
MAX_MODULE_LINES = 600


def _lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=project,
        env={"PYTHONPATH": str(project / "src"), "PATH": str(BIN)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy(tmp_path: Path) -> Path:
    """The package and its contracts in ``tmp_path``, as a project of its own."""
    shutil.copytree(PACKAGE, tmp_path / "src" / "storsync", ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _plant(project: Path, module: str, line: str) -> None:
    path = project / "src" / "storsync" / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("engine/compare.py", "import storsync.service.core", "Nothing imports upward"),
        ("state/records.py", "from storsync.runner import job", "Nothing imports upward"),
        ("storage/registry.py", "import storsync.engine.reconcile", "Nothing imports upward"),
        ("engine/reconcile.py", "import os", "The engine does no I/O"),
        ("service/sessions.py", "import boto3", "Storage SDKs only inside storage"),
        ("service/core.py", "import fastapi", "The web framework only inside api"),
        ("api/render.py", "import sqlalchemy", "Database libraries only inside state"),
        ("runner/run.py", "import storsync.config", "Configuration is read at the edge only"),
    ],
)
def test_a_planted_breach_breaks_the_check(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    project = _copy(tmp_path)
    assert _lint_imports(project).returncode == 0  # the copy itself is clean
    _plant(project, module, line)
    result = _lint_imports(project)
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout, result.stdout


def _ruff(project: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "TID251", "--no-cache", str(path)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "line",
    [
        "import time\nNOW = time.time()",
        "import time\ntime.sleep(0)",
        "import datetime\nNOW = datetime.datetime.now()",
    ],
)
def test_the_wall_clock_outside_clock_py_breaks_the_lint(tmp_path: Path, line: str) -> None:
    project = _copy(tmp_path)
    module = project / "src" / "storsync" / "runner" / "retry.py"
    assert _ruff(project, module).returncode == 0
    _plant(project, "runner/retry.py", line)
    result = _ruff(project, module)
    assert result.returncode != 0 and "TID251" in result.stdout, result.stdout
    # The one module allowed to.
    clock = project / "src" / "storsync" / "clock.py"
    _plant(project, "clock.py", line)
    assert _ruff(project, clock).returncode == 0


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_contracts_name_every_layer() -> None:
    """Every package and module of storsync is in a layer of the contract, so a new one
    cannot escape the check by being in none."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in config["contracts"] if c["id"] == "layers"]
    named = {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}
    found = {
        f"storsync.{path.stem if path.is_file() else path.name}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    edges = {"storsync.config"}  # read at the edge: its own contract names who may not
    assert found - named - edges == set()


def test_the_engine_imports_only_pure_modules() -> None:
    """What the engine's modules import, by name: the shared vocabulary, the standard
    library's pure modules and pathspec (a pattern matcher)."""
    allowed = {"__future__", "collections", "dataclasses", "enum", "pathspec", "storsync"}
    imported: set[str] = set()
    for path in (PACKAGE / "engine").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert imported <= allowed, imported - allowed
