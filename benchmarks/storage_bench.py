"""Storage figures: checkpoint cost and cold reads, memory vs encrypted SQLite.

    python benchmarks/storage_bench.py [--dir DIR]

Prints, per store: one checkpoint of one small record (the per-send case),
with 1 and with 10,000 other records in the working set; a checkpoint of 20
records; cold open + load of 100 and of 1,000 records; and an event-loop
stall check (the longest single blocking call while checkpointing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ping_core.storage import MemoryBlobStore, MlsStateStore, SqliteBlobStore  # noqa: E402

KEY = os.urandom(32)


async def _timed(n: int, step: Callable[[int], Awaitable[object]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await step(i)
        out.append(time.perf_counter() - t0)
    return out


async def _max_stall(step: Callable[[], Awaitable[object]], n: int = 50) -> float:
    """The longest stretch the event loop could not run another task while ``step`` ran."""
    stop = False
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    for _ in range(n):
        await step()
        await asyncio.sleep(0)
    stop = True
    await tick
    return max(gaps)


def _fmt(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = statistics.median(samples) * 1e3
    p95 = samples[int(len(samples) * 0.95) - 1] * 1e3
    return f"median {p50:7.3f} ms  p95 {p95:7.3f} ms  ({1 / statistics.mean(samples):8.0f}/s)"


async def bench(name: str, make: Callable[[str], object], workdir: Path) -> None:
    print(f"\n== {name}")
    for others in (1, 10_000):
        blobs = make(str(workdir / f"{name}-{others}.db"))
        state = MlsStateStore(blobs)  # type: ignore[arg-type]
        for i in range(others):
            state.put(f"g/{i:05d}/tree", os.urandom(200))
        await state.checkpoint()

        async def one(i: int) -> None:
            state.put("g/00000/ratchet", i.to_bytes(4, "big") + b"r" * 60)
            await state.checkpoint()

        samples = await _timed(300, one)
        counter = iter(range(10**6, 2 * 10**6))
        stall = await _max_stall(lambda: one(next(counter)))
        print(f"checkpoint 1 record (64 B), {others:>5} records in set: {_fmt(samples)}  loop blocked max {stall * 1e3:6.2f} ms")

        async def twenty(i: int) -> None:
            for j in range(20):
                state.put(f"g/{j:05d}/tree", os.urandom(200))
            await state.checkpoint()

        if others == 1:
            print(f"checkpoint 20 records (200 B each):                {_fmt(await _timed(100, twenty))}")
        close = getattr(blobs, "close", None)
        if close:
            close()

    for count in (100, 1000):
        path = str(workdir / f"{name}-cold-{count}.db")
        blobs = make(path)
        seed = MlsStateStore(blobs)  # type: ignore[arg-type]
        for i in range(count):
            seed.put(f"g/{i:04d}/state", os.urandom(300))
        await seed.checkpoint()
        close = getattr(blobs, "close", None)
        samples = []
        for _ in range(20):
            t0 = time.perf_counter()
            store = make(path) if close else blobs
            loaded = await MlsStateStore.open(store)  # type: ignore[arg-type]
            samples.append(time.perf_counter() - t0)
            assert len(loaded) == count
            if close and store is not blobs:
                store.close()  # type: ignore[attr-defined]
        if close:
            close()
        print(f"cold open + load {count:>4} records (300 B):         {_fmt(samples)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parent), help="directory for the SQLite files (default: next to this script, i.e. the project's disk; /tmp may not fsync)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        workdir = Path(tmp)
        print(f"python {sys.version.split()[0]}, files in {workdir}")
        asyncio.run(bench("memory", lambda _p: MemoryBlobStore(), workdir))
        asyncio.run(bench("sqlite-FULL", lambda p: SqliteBlobStore.open(p, KEY, synchronous="FULL"), workdir))
        asyncio.run(bench("sqlite-FULL-inline", lambda p: SqliteBlobStore.open(p, KEY, synchronous="FULL", offload=False), workdir))
        asyncio.run(bench("sqlite-NORMAL", lambda p: SqliteBlobStore.open(p, KEY, synchronous="NORMAL"), workdir))


if __name__ == "__main__":
    main()
