"""The Pyodide harness itself: failures are reported, async tests run.

Boots a second interpreter over a throw-away tests folder, so a harness that
reported everything as passing (or could not run async tests) fails here.
"""

from __future__ import annotations

from pathlib import Path

from pyodide_node import PyodideNode, build_for_tests

SAMPLE = '''
import asyncio
import pytest

def test_passes():
    assert sum(range(4)) == 6

def test_fails():
    assert 1 == 2, "expected failure"

@pytest.mark.skip(reason="sample skip")
def test_skipped():
    pass

@pytest.fixture
async def value():
    await asyncio.sleep(0)
    yield 5

async def test_async(value):
    lock = asyncio.Lock()

    async def worker(i):
        async with lock:
            await asyncio.sleep(0.001)
            return i

    assert await asyncio.gather(*(worker(i) for i in range(5))) == [0, 1, 2, 3, 4]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.sleep(5), 0.01)
    assert value == 5
'''


def test_harness_reports_failures_and_runs_async_tests(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    host = PyodideNode(wheels=build_for_tests(), tests=tmp_path)
    try:
        run = host.pytest(["-q", "tests/test_sample.py"])
    finally:
        host.close()
    outcomes = {r["nodeid"].split("::")[1]: r["outcome"] for r in run.reports}
    assert outcomes == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_skipped": "skipped",
        "test_async": "passed",
    }, run.output
    assert run.exit_code == 1
    assert "expected failure" in run.output
