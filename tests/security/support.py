"""The attack suite's harness: a real ``ping_server`` process on loopback (SQLite file) and the
type of the client factory fixture (see conftest.py)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from ping_core.client import MessagingClient
from ping_server.process import spawn, stop


class Server:
    """``python -m ping_server`` on a free loopback port with an SQLite file; stopped by :meth:`stop`."""

    def __init__(self, folder: Path, *extra: str) -> None:
        self.db = str(folder / f"ping-{secrets.token_hex(4)}.sqlite")
        self.log_path = folder / f"server-{secrets.token_hex(4)}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed by stop())
        try:
            self.proc, self.url = spawn(*extra, db=self.db, stderr=self._log)
        except RuntimeError as exc:
            self._log.close()
            raise RuntimeError(f"{exc}: {self.log_path.read_text(errors='replace')[-2000:]}") from None

    def rss_kib(self) -> int:
        """The server process's resident memory (KiB), from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS line")  # pragma: no cover - Linux only

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()


ClientFactory = Callable[..., Awaitable[MessagingClient]]
