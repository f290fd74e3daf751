"""The ping_core wheel the browser installs holds no test or tool code, and works without it.

``build.py`` leaves ``TEST_ONLY`` (``ping_core.testing``: the in-memory delivery
service, fault injection, the vector runner; and the interop driver
``ping_core.mls.interop``) out of the ping_core wheel of dist/ and puts exactly
those files into the ``ping-core-testing`` wheel that only the Pyodide test
harness installs. The shipped wheel is unpacked on its own and every module in
it imported: a shipped module that imported test code would fail here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import build  # noqa: E402

sys.path.pop(0)


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return [n for n in zf.namelist() if ".dist-info/" not in n]


def _is_test_only(name: str) -> bool:
    return any(name.startswith(prefix) for prefix in build.TEST_ONLY)


def test_core_wheel_leaves_out_test_code(tmp_path: Path) -> None:
    core = next(spec for spec in build.project_wheel_specs() if spec.package == "ping_core")
    names = _names(build.build_wheel(core, tmp_path))
    assert "ping_core/client.py" in names and "ping_core/mls/group/group.py" in names
    assert [n for n in names if _is_test_only(n)] == []
    assert not any(n.startswith("ping_core/testing") for n in names)
    assert "ping_core/mls/interop.py" not in names


def test_testing_wheel_holds_exactly_the_test_code(tmp_path: Path) -> None:
    names = _names(build.build_wheel(build.testing_wheel_spec(), tmp_path))
    assert "ping_core/testing/memory.py" in names
    assert "ping_core/testing/vectors/__main__.py" in names
    assert "ping_core/mls/interop.py" in names
    assert [n for n in names if not _is_test_only(n)] == []


def test_every_shipped_module_imports_without_the_test_code(tmp_path: Path) -> None:
    core = next(spec for spec in build.project_wheel_specs() if spec.package == "ping_core")
    wheel = build.build_wheel(core, tmp_path / "wheel")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    modules = sorted(
        n[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for n in _names(wheel) if n.endswith(".py") and not n.endswith("__main__.py")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "assert sys.modules['ping_core'].__file__.startswith(sys.argv[1])\n"
        "print(sorted(m for m in sys.modules if m.startswith('ping_core.testing') or m.endswith('.interop')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]"


def test_import_ping_core_imports_no_test_code() -> None:
    code = "import sys, ping_core, ping_core.mls; print(sorted(m for m in sys.modules if 'testing' in m or m.endswith('.interop')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
