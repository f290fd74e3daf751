"""Real ping_server processes for tests, and direct reads of their databases."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any

from ping_server.process import spawn, stop

DATA_TABLES = ("accounts", "devices", "key_packages", "conversations", "members", "messages", "welcomes", "public_groups")


class ServerProcess:
    """``python -m ping_server`` on a free loopback port, stopped by :meth:`stop`."""

    def __init__(self, db: str | None, *extra: str, log_dir: Path) -> None:
        self.db = db
        self.log_path = log_dir / f"server-{secrets.token_hex(4)}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (open for the process's lifetime, closed by stop())
        try:
            self.proc, self.url = spawn(*extra, db=db, stderr=self._log)
        except RuntimeError as exc:
            self._log.close()
            raise RuntimeError(f"{exc}: {self.log_path.read_text(errors='replace')[-2000:]}") from None

    def stop(self) -> None:
        stop(self.proc)
        self._log.close()


class Inspector:
    """Reads the server's database directly (row counts), for "nothing was stored" checks."""

    def __init__(self, db: str) -> None:
        self.db = db

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.db.startswith("postgresql://"):
            import psycopg

            with psycopg.connect(self.db, autocommit=True) as pg:
                return pg.execute(sql).fetchall()
        lite = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return lite.execute(sql).fetchall()
        finally:
            lite.close()

    def counts(self) -> dict[str, int]:
        """Rows per data table (not the nonce table: authentication bookkeeping)."""
        sql = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM {t}" for t in DATA_TABLES)
        return {name: int(n) for name, n in self._rows(sql)}

    def nonces(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM nonces")[0][0])

    def scalar(self, sql: str) -> Any:
        rows = self._rows(sql)
        return rows[0][0] if rows else None
