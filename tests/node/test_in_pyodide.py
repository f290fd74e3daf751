"""Run test files of this repository INSIDE Pyodide (under Node), unchanged.

Each entry of ``IN_PYODIDE`` is a path under tests/ (a file, a folder or a
node id, plus extra pytest arguments if needed) that is run by pytest inside
the ONE Pyodide interpreter of this session, with the wheels the browser
worker installs (ping_core, pyodide_app, cbor2) and the noble JS crypto
backend registered exactly as in the worker. pyca is not there, so
``default_provider()`` is noble: ``PING_EXPECT_CRYPTO=noble`` makes
tests/core/test_crypto_vectors.py assert it.

To run another file inside Pyodide, add one line to ``IN_PYODIDE``.
Async tests work (pytest-asyncio, asyncio.run): the harness gives Pyodide
JSPI on Node 20 (--experimental-wasm-stack-switching), enters pytest
asynchronously and runs every asyncio.Runner on Pyodide's one WebLoop
(see pyodide_host.mjs). tests/node/test_harness.py checks both.
"""

from __future__ import annotations

import pytest

from pyodide_node import PyodideNode

IN_PYODIDE: list[str] = [
    "tests/core/test_crypto_vectors.py",
    "tests/core/test_worker_rpc.py",
    # MLS engine, lower half: HPKE, key schedule, secret tree, framing, Welcome.
    "tests/mls/test_hpke.py tests/mls/test_primitives.py tests/mls/test_treemath.py tests/mls/test_schedule.py"
    " tests/mls/test_psk.py tests/mls/test_secret_tree.py tests/mls/test_transcript.py tests/mls/test_framing.py"
    " tests/mls/test_welcome.py",
    "tests/mls/test_tree.py tests/mls/test_treekem.py tests/mls/test_vectors.py -k tree",
    "tests/mls/test_group.py tests/mls/test_group_validation.py tests/mls/test_group_state.py tests/mls/test_group_interop.py"
    " tests/mls/test_group_hooks.py",
    "tests/mls/test_vectors.py -k not(tree)",
    # SDK foundations: records, identity, devices, linking, storage (emscripten sqlite3), memory transport.
    "tests/core/test_cbor.py tests/core/test_identity.py tests/core/test_clock_sync.py tests/core/test_device_message.py"
    " tests/core/test_decoders_fuzz.py tests/core/test_link.py tests/core/test_storage.py tests/core/test_transport_memory.py",
    "tests/sdk --ignore=tests/sdk/test_http_server.py",
]

# Environment inside Pyodide for every run.
ENV = {"PING_EXPECT_CRYPTO": "noble"}


def test_pyodide_boots_with_the_js_crypto_backend(pyodide: PyodideNode) -> None:
    assert pyodide.info["crypto"] == "noble"
    assert pyodide.info["python"].startswith("3.14")
    probe = pyodide.python(
        "import sys\n"
        "from ping_core.mls.crypto import available_backends, default_provider\n"
        "[sys.platform, default_provider().name, available_backends(),"
        " 'cryptography' in sys.modules]"
    )
    assert probe == ["emscripten", "noble", ["noble"], False]


@pytest.mark.parametrize("target", IN_PYODIDE)
def test_inside_pyodide(pyodide: PyodideNode, target: str) -> None:
    run = pyodide.pytest(["-q", "-rs", *target.split()], env=ENV)
    passed, skipped = run.count("passed"), run.count("skipped")
    print(f"{target}: {passed} passed, {skipped} skipped inside Pyodide")
    assert run.exit_code == 0, f"pytest exit {run.exit_code} inside Pyodide; failed: {run.failures}\n{run.output[-6000:]}"
    assert passed > 0, f"no test ran inside Pyodide for {target}\n{run.output[-3000:]}"
