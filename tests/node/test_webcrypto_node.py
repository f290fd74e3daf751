"""The WebCrypto provider inside Pyodide under Node 20 (OpenSSL's WebCrypto, old-API JSPI).

The harness boots Python synchronously, so its default backend stays noble
(this is also the "synchronous entry" case of the boot-time choice). Its
requests enter Python through runPythonAsync, where JSPI works, so the
WebCrypto provider can be run here explicitly: the whole standard-vector and
failure file of tests/core through it (``PING_CRYPTO_BACKENDS``), without
registering it, so other tests in this interpreter still see noble.
Chromium's own WebCrypto is tested in tests/browser/test_webcrypto.py.
"""

from __future__ import annotations

import pytest

from pyodide_node import PyodideNode

# Make ``provider`` from ``module`` inside Pyodide and run ``probe`` strictly.
_PROBE = """
from pyodide.ffi import can_run_sync
from pyodide_app.crypto_select import probe
from pyodide_app.webcrypto import WebCryptoProvider
strict = WebCryptoProvider(aead_min=0, strict=True)
[can_run_sync(), probe(strict), strict.counts]
"""


def _jspi(pyodide: PyodideNode) -> bool:
    return bool(pyodide.python("from pyodide.ffi import can_run_sync\ncan_run_sync()"))


def test_synchronous_boot_keeps_noble(pyodide: PyodideNode) -> None:
    assert pyodide.info["crypto"] == "noble"
    assert pyodide.info["crypto_reason"].startswith("no JSPI")


def test_webcrypto_passes_the_probe_without_noble(pyodide: PyodideNode) -> None:
    if not _jspi(pyodide):
        pytest.skip("this node has no JSPI flag: the WebCrypto provider cannot run here (gap)")
    can, problem, counts = pyodide.python(_PROBE)
    assert can is True
    assert problem is None
    assert counts["webcrypto"] >= 10 and counts["fallback"] == 0 and counts["sync_entry"] == 0


def test_crypto_vectors_through_webcrypto_inside_pyodide(pyodide: PyodideNode) -> None:
    if not _jspi(pyodide):
        pytest.skip("this node has no JSPI flag: the WebCrypto provider cannot run here (gap)")
    try:
        run = pyodide.pytest(
            ["-q", "-rs", "tests/core/test_crypto_vectors.py"],
            env={"PING_CRYPTO_BACKENDS": "webcrypto,webcrypto-all", "PING_EXPECT_CRYPTO": "noble"},
        )
    finally:
        pyodide.python("import os\nos.environ.pop('PING_CRYPTO_BACKENDS', None)")
    assert run.exit_code == 0, f"failed inside Pyodide: {run.failures}\n{run.output[-6000:]}"
    assert run.count("skipped") == 0, run.output[-3000:]
    # Both variants ran every backend-parametrized test.
    ids = [r["nodeid"] for r in run.reports if r["outcome"] == "passed"]
    assert sum("[webcrypto-all" in i or "-webcrypto-all]" in i for i in ids) >= 50, ids[:5]
    assert sum("[webcrypto" in i and "webcrypto-all" not in i for i in ids) >= 50, ids[:5]
