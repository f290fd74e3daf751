#!/usr/bin/env python3
"""Assemble dist/: everything the browser (and the Node test harness) loads.

    python build.py            # dist/ for the demo server
    python build.py --test     # also the pytest wheels the Pyodide test harness installs

dist/ gets:
  pyodide/            the Pyodide core from node_modules (run `npm ci` first)
  wheels/             micropip 0.11.1 and cbor2 5.9.0 (pure-Python wheels fetched
                      with pip into .build-cache/, then reused offline), and freshly
                      built py3-none-any wheels of ping_core (without its test code,
                      TEST_ONLY) and pyodide_app, each
                      module with its bytecode compiled by that Pyodide (in Node,
                      cached per source under .build-cache/pyc/)
  pingcrypto.mjs      the esbuild bundle of js/pingcrypto.mjs (noble)
  manifest.json       what the worker installs, in order, and the files the service worker caches
  the files of static/

Idempotent: a file is written only when its bytes change, files that no longer
belong are removed, wheels are reproducible (fixed timestamps, sorted entries),
and the downloaded wheels are fetched once. Offline after the first run.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
CACHE = ROOT / ".build-cache"
NODE_MODULES = ROOT / "node_modules"

PYODIDE_VERSION = "314.0.7"
# Python inside that Pyodide: pip resolves wheels for it.
PYODIDE_PYTHON = "3.14"
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
    "package.json",
)

# Wheels the worker installs, in install order (dependencies first).
RUNTIME_WHEELS = ("micropip==0.11.1", "cbor2==5.9.0")
# Wheels the Pyodide test harness (tests/node) installs to run pytest inside
# Pyodide; never shipped in dist/. Pinned with their dependencies, no resolver.
TEST_WHEELS = (
    "iniconfig==2.3.0",
    "packaging==26.2",
    "pluggy==1.6.0",
    "pygments==2.20.0",
    "pytest==9.0.3",
    "typing_extensions==4.16.0",
    "pytest-asyncio==1.5.0",
    "sortedcontainers==2.4.0",
    "hypothesis==6.155.2",
)

# Test and tool code of ping_core (paths under the repository root; a folder ends in
# "/"): left out of the ping_core wheel the browser installs, and built into a
# separate ``ping-core-testing`` wheel that only the Pyodide test harness installs.
TEST_ONLY = ("ping_core/testing/", "ping_core/mls/interop.py")

# Fixed timestamp for reproducible wheels (the zip format starts in 1980).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """A build step cannot run; the message says what to do."""


# -- small file helpers --------------------------------------------------------


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it already holds exactly these bytes."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless ``dst`` has the same size and content."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and _digest(src) == _digest(dst):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return True


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- wheels --------------------------------------------------------------------


@dataclass(frozen=True)
class WheelSpec:
    """What goes into one of our own py3-none-any wheels."""

    name: str  # distribution name, e.g. "ping-core"
    version: str
    package: str  # import package folder under ROOT
    summary: str
    requires_python: str
    requires: tuple[str, ...]
    # Files whose path (relative to ROOT) starts with one of these are left out ...
    exclude: tuple[str, ...] = ()
    # ... and, when given, only files whose path starts with one of these go in.
    only: tuple[str, ...] = ()

    def holds(self, rel: str) -> bool:
        """Whether the file at ``rel`` (relative to ROOT) belongs in this wheel."""
        if any(rel.startswith(prefix) for prefix in self.exclude):
            return False
        return not self.only or any(rel.startswith(prefix) for prefix in self.only)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_name(spec: WheelSpec) -> str:
    return f"{spec.name.replace('-', '_')}-{spec.version}-py3-none-any.whl"


def wheel_sources(spec: WheelSpec) -> list[tuple[str, bytes]]:
    """The package files a wheel of ``spec`` holds (its .py files, py.typed, .json), sorted."""
    files: list[tuple[str, bytes]] = []
    for path in sorted((ROOT / spec.package).rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if path.suffix not in (".py", ".typed", ".json"):
            continue
        rel = path.relative_to(ROOT).as_posix()
        if spec.holds(rel):
            files.append((rel, path.read_bytes()))
    return files


def build_wheel(spec: WheelSpec, out_dir: Path, bytecode: dict[str, bytes] | None = None) -> Path:
    """A reproducible py3-none-any wheel of ``spec.package``.

    Built here rather than by the PEP 517 backend so the build is offline and
    takes milliseconds; the wheel holds the same files as hatchling's (the
    package's .py files and py.typed) with standard metadata, and, from
    ``bytecode`` (source path -> .pyc, see :func:`compile_bytecode`), each
    module's bytecode beside its source (``x.py`` -> ``x.pyc``: where zipimport
    looks, the worker importing the wheels from sys.path as zip files).
    """
    dist_name = spec.name.replace("-", "_")
    dist_info = f"{dist_name}-{spec.version}.dist-info"
    files = wheel_sources(spec)
    for name, _ in list(files):
        if bytecode is not None and name in bytecode:
            files.append((name[: -len(".py")] + ".pyc", bytecode[name]))
    files.sort()
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        f"Summary: {spec.summary}",
        f"Requires-Python: {spec.requires_python}",
        *(f"Requires-Dist: {req}" for req in spec.requires),
    ]
    files.append((f"{dist_info}/METADATA", ("\n".join(metadata) + "\n").encode()))
    wheel_meta = "Wheel-Version: 1.0\nGenerator: ping build.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files.append((f"{dist_info}/WHEEL", wheel_meta.encode()))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    path = out_dir / wheel_name(spec)
    write_if_changed(path, buf.getvalue())
    return path


# -- bytecode ------------------------------------------------------------------
#
# The worker's first boot (no memory snapshot yet) imports ping_core and
# pyodide_app from the wheels; compiling their ~300 modules was ~40% of that
# import. The wheels therefore carry bytecode made by the very Pyodide dist/
# ships (run in Node at build time): its Python version, magic number and
# marshal format by construction. The .pyc files are "unchecked-hash" (PEP 552):
# zipimport uses them without comparing them with the source (the wheel is
# immutable, and each file is compiled from the bytes shipped beside it); one
# that a different Python cannot read (another magic number) is skipped and
# the source compiled, as before.

_COMPILE_JS = r"""
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const { loadPyodide } = await import(process.argv[1]);
const py = await loadPyodide({ indexURL: process.argv[2] });
py.globals.set("request", py.toPy(request));
const out = py.runPython(`
import base64, json, os, py_compile, importlib.util
out = {"magic": importlib.util.MAGIC_NUMBER.hex(), "pyc": {}}
for name, (source, display) in request.items():
    src = "/tmp/pyc-src/" + name
    os.makedirs(os.path.dirname(src), exist_ok=True)
    with open(src, "wb") as f:
        f.write(base64.b64decode(source))
    dst = src + "c"
    py_compile.compile(src, cfile=dst, dfile=display, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    with open(dst, "rb") as f:
        out["pyc"][name] = base64.b64encode(f.read()).decode()
json.dumps(out)
`);
process.stdout.write(out);
"""

# Where static/pyboot.mjs puts the wheels in Pyodide's file system: the .pyc
# files name their source there (tracebacks), as a compile at import would.
WHEEL_DIR = "/lib/ping-wheels"


def compile_bytecode(specs: list[WheelSpec], pyodide: Path) -> dict[str, bytes]:
    """Source path -> unchecked-hash .pyc of every .py of ``specs``, compiled by
    ``pyodide`` (the node_modules copy dist/ ships) in Node. Cached per source
    bytes under .build-cache/pyc/ (a build with unchanged sources starts no Node)."""
    sources: dict[str, bytes] = {}
    display: dict[str, str] = {}  # the file name the code objects carry
    for spec in specs:
        for name, data in wheel_sources(spec):
            if name.endswith(".py"):
                sources[name] = data
                display[name] = f"{WHEEL_DIR}/{wheel_name(spec)}/{name}"
    cache = CACHE / "pyc" / PYODIDE_VERSION

    def key(name: str) -> Path:
        return cache / (hashlib.sha256(display[name].encode() + b"\0" + sources[name]).hexdigest() + ".pyc")

    missing = {name for name in sources if not key(name).is_file()}
    if missing:
        node = shutil.which("node")
        if node is None:
            raise BuildError("node is not on PATH: it compiles the wheels' bytecode with Pyodide")
        request = {n: [base64.b64encode(sources[n]).decode(), display[n]] for n in sorted(missing)}
        proc = subprocess.run(
            [node, "--input-type=module", "-e", _COMPILE_JS, "--",
             (pyodide / "pyodide.mjs").as_uri(), str(pyodide) + os.sep],
            input=json.dumps(request).encode(),
            capture_output=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise BuildError(f"compiling the bytecode in Pyodide failed:\n{proc.stderr.decode(errors='replace')[-2000:]}")
        answer = json.loads(proc.stdout)
        for name, pyc in answer["pyc"].items():
            write_if_changed(key(name), base64.b64decode(pyc))
    return {name: key(name).read_bytes() for name in sources}


def _core_spec() -> WheelSpec:
    """ping_core from pyproject.toml, without its test and tool code (TEST_ONLY)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return WheelSpec(
        name=project["name"],
        version=project["version"],
        package="ping_core",
        summary=project.get("description", ""),
        requires_python=project.get("requires-python", ">=3.11"),
        requires=tuple(project.get("dependencies", ())),
        exclude=TEST_ONLY,
    )


def testing_wheel_spec() -> WheelSpec:
    """ping_core's TEST_ONLY files (ping_core.testing, the interop driver): for the test harness only."""
    core = _core_spec()
    return WheelSpec(
        name=f"{core.name}-testing",
        version=core.version,
        package="ping_core",
        summary="Ping's test helpers and tools (in-memory delivery service, vector runner, interop driver)",
        requires_python=core.requires_python,
        requires=(f"{core.name}=={core.version}",),
        only=TEST_ONLY,
    )


def project_wheel_specs() -> list[WheelSpec]:
    """ping_core from pyproject.toml (without TEST_ONLY), and the Pyodide-only pyodide_app."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _core_spec()
    app = WheelSpec(
        name="ping-pyodide-app",
        version=project["version"],
        package="pyodide_app",
        summary="Ping's Pyodide host: worker RPC, IndexedDB store, fetch bridge, JS crypto backend",
        requires_python=">=3.11",
        requires=(f"{project['name']}=={project['version']}",),
    )
    return [core, app]


def _wheel_file(folder: Path, requirement: str) -> Path | None:
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_').lower()}-{version}-"
    for path in sorted(folder.glob("*.whl")):
        if path.name.lower().startswith(prefix):
            return path
    return None


def fetch_wheels(requirements: tuple[str, ...], folder: Path) -> list[Path]:
    """Pure-Python wheels for Pyodide's Python, downloaded with pip once.

    Each requirement is pinned; ``--no-deps`` because the pins already list
    every dependency, and pip's resolver would look at this CPython instead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    missing = [req for req in requirements if _wheel_file(folder, req) is None]
    if missing:
        print(f"build: fetching {', '.join(missing)} with pip into {folder.relative_to(ROOT)}/")
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--platform", "any", "--implementation", "py",
            "--abi", "none", "--python-version", PYODIDE_PYTHON, "--dest", str(folder), *missing,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(
                "pip could not fetch the wheels "
                f"{missing} (needs PyPI once; later builds reuse {folder}):\n{proc.stderr.strip()}"
            )
    paths = []
    for req in requirements:
        path = _wheel_file(folder, req)
        if path is None:
            raise BuildError(f"pip did not produce a pure-Python wheel for {req}")
        paths.append(path)
    return paths


# -- the steps -----------------------------------------------------------------


def check_node_modules() -> Path:
    """The Pyodide core folder, or a BuildError telling the user to run npm."""
    pyodide = NODE_MODULES / "pyodide"
    esbuild = NODE_MODULES / ".bin" / "esbuild"
    if not (pyodide / "package.json").is_file() or not esbuild.exists():
        raise BuildError(
            "node_modules is missing or incomplete: run `npm ci` (or `npm install`) in "
            f"{ROOT} first, then `python build.py` again."
        )
    version = json.loads((pyodide / "package.json").read_text())["version"]
    if version != PYODIDE_VERSION:
        raise BuildError(
            f"node_modules has pyodide {version}, this build expects {PYODIDE_VERSION}: run `npm ci`."
        )
    return pyodide


def bundle_crypto(out: Path) -> None:
    """esbuild js/pingcrypto.mjs (and noble) into one ES module."""
    esbuild = NODE_MODULES / ".bin" / "esbuild"
    tmp = CACHE / "pingcrypto.mjs"
    CACHE.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(esbuild), str(ROOT / "js" / "pingcrypto.mjs"), "--bundle", "--format=esm",
         "--target=es2022", "--log-level=warning", f"--outfile={tmp}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BuildError(f"esbuild failed:\n{proc.stderr.strip()}")
    write_if_changed(out, tmp.read_bytes())


def build(with_test_wheels: bool = False) -> dict[str, object]:
    """Bring dist/ up to date and return its manifest."""
    pyodide = check_node_modules()
    wanted: set[Path] = set()

    def put(path: Path) -> Path:
        wanted.add(path)
        return path

    for name in PYODIDE_FILES:
        copy_if_changed(pyodide / name, put(DIST / "pyodide" / name))

    wheels_dir = DIST / "wheels"
    runtime = fetch_wheels(RUNTIME_WHEELS, CACHE / "wheels")
    for src in runtime:
        copy_if_changed(src, put(wheels_dir / src.name))
    wheels_dir.mkdir(parents=True, exist_ok=True)
    specs = project_wheel_specs()
    bytecode = compile_bytecode(specs, pyodide)
    ours = [put(build_wheel(spec, wheels_dir, bytecode)) for spec in specs]

    bundle_crypto(put(DIST / "pingcrypto.mjs"))

    static = ROOT / "static"
    for src in sorted(static.rglob("*")):
        if src.is_file():
            copy_if_changed(src, put(DIST / src.relative_to(static)))

    wheel_names = [p.name for p in runtime + ours]
    build_id = hashlib.sha256()
    for path in sorted(wanted):
        build_id.update(path.relative_to(DIST).as_posix().encode())
        build_id.update(_digest(path).encode())
    manifest: dict[str, object] = {
        "pyodide": PYODIDE_VERSION,
        # micropip is loaded by pyodide.loadPackage; the rest by micropip, in order.
        "micropip": wheel_names[0],
        "wheels": wheel_names[1:],
        "build": build_id.hexdigest()[:16],
        # What the service worker (static/sw.mjs) caches for offline starts: every
        # file of dist/ but itself (the browser keeps the service worker script).
        "files": sorted(p.relative_to(DIST).as_posix() for p in wanted if p.name != "sw.mjs"),
    }
    write_if_changed(put(DIST / "manifest.json"), (json.dumps(manifest, indent=2) + "\n").encode())

    # Drop whatever an earlier build left that no longer belongs.
    for path in sorted(DIST.rglob("*"), reverse=True):
        if path.is_file() and path not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()

    if with_test_wheels:
        test_wheel_paths()
    return manifest


def test_wheel_paths() -> list[Path]:
    """The wheels for the Pyodide harness, in install order: pytest & co. (fetched if
    needed), then ping_core's test code (built into .build-cache/, never into dist/)."""
    ours = CACHE / "test-ours"
    ours.mkdir(parents=True, exist_ok=True)
    return [*fetch_wheels(TEST_WHEELS, CACHE / "test-wheels"), build_wheel(testing_wheel_spec(), ours)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", action="store_true", help="also fetch the pytest wheels for tests/node")
    args = parser.parse_args(argv)
    try:
        manifest = build(with_test_wheels=args.test)
    except BuildError as exc:
        print(f"build.py: {exc}", file=sys.stderr)
        return 1
    print(f"build: dist/ ready (build {manifest['build']}, wheels: {', '.join(manifest['wheels'])})")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
