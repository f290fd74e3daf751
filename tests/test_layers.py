"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and each one bites.

``test_contracts_kept`` runs import-linter on the tree as it is: a broken
contract (say ``ping_core.mls`` importing ``ping_core.client``, or a cycle
across the engine's layers) fails the test run with import-linter's report.
``test_contract_bites`` copies the packages, adds one import that breaks a
given contract, and checks that import-linter reports that contract broken:
a contract that silently matches nothing (a misspelt module, an ignore that
swallows everything) fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ping_core", "ping_server", "pyodide_app")

# contract id -> (file relative to the root, the import that breaks that contract)
BITES: dict[str, tuple[str, str]] = {
    "mls-standalone": ("ping_core/mls/tls.py", "import ping_core.ids"),
    "sdk-no-hosts": ("ping_core/ids.py", "import ping_server.limits"),
    "server-no-browser": ("ping_server/limits.py", "import pyodide_app.locks"),
    "server-db-standalone": ("ping_server/db/schema.py", "import ping_server.delivery"),
    "server-db-layers": ("ping_server/db/common.py", "import ping_server.db.schema"),
    "mls-layers": ("ping_core/mls/tls.py", "import ping_core.mls.group"),
    "mls-tree-layers": ("ping_core/mls/tree/treemath.py", "import ping_core.mls.tree.ratchet_tree"),
    "pyodide-rpc-leaf": ("pyodide_app/rpc.py", "import pyodide_app.fetch"),
    "pyodide-one-root": ("pyodide_app/push.py", "import pyodide_app.worker"),
    "pyodide-app-acyclic": ("pyodide_app/session.py", "import pyodide_app.sdk"),
    "pyodide-sdk-layers": ("pyodide_app/sdk/core.py", "import pyodide_app.sdk.syncing"),
    "mls-framing-layers": ("ping_core/mls/framing/epoch_framing.py", "import ping_core.mls.framing.sender_data"),
    "mls-schedule-layers": ("ping_core/mls/schedule/psk_secret.py", "import ping_core.mls.schedule.key_schedule"),
    "mls-group-layers": ("ping_core/mls/group/state.py", "import ping_core.mls.group.group"),
}


def _contract_ids() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["id"] for c in config["tool"]["importlinter"]["contracts"]]


def _lint(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """import-linter on the packages under ``root`` with ``root``'s pyproject.toml (no cache)."""
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "400", "NO_COLOR": "1"}
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )


def test_contracts_kept() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout, result.stdout


def test_every_contract_has_a_bite() -> None:
    assert sorted(_contract_ids()) == sorted(BITES)


@pytest.mark.parametrize("contract", sorted(BITES))
def test_contract_bites(contract: str, tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path, bad_import = BITES[contract]
    with open(tmp_path / path, "a") as f:
        f.write(f"\n{bad_import}  # breaks {contract}\n")
    result = _lint(tmp_path, "--contract", contract)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "1 broken" in result.stdout, result.stdout
