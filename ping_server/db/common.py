"""What both engines share: the :class:`Database` and :class:`Tx` protocols, the SQL dialects, and
:class:`DatabaseUnavailable`.

A :class:`Database` runs a function ``fn(tx)`` inside ONE transaction and returns its result:
committed when ``fn`` returns, rolled back when it raises (the exception then propagates). ``fn``
speaks SQL through :class:`Tx` with ``?`` placeholders and the few words of :class:`Dialect`, so
the same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = ["Database", "Tx", "Dialect", "DatabaseUnavailable", "Params", "SQLITE", "POSTGRES"]

_T = TypeVar("_T")
Params = Sequence[Any]


class DatabaseUnavailable(Exception):
    """The database could not be reached or failed mid-request (the outcome may be unknown)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The words that differ between the engines."""

    name: str
    # Appended to a SELECT whose rows the transaction then changes. SQLite needs
    # none: BEGIN IMMEDIATE already holds the database's one write lock.
    for_update: str
    blob: str
    norowid: str


SQLITE = Dialect("sqlite", "", "BLOB", " WITHOUT ROWID")
POSTGRES = Dialect("postgres", " FOR UPDATE", "BYTEA", "")


class Tx(Protocol):
    """One open transaction (``?`` placeholders on every engine)."""

    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]: ...

    def one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row, or None."""
        ...

    @property
    def writes(self) -> int:
        """Rows written through this Tx so far (inserted, updated or deleted; an ``INSERT ... ON
        CONFLICT DO NOTHING`` that inserted nothing counts none): a change of it tells a caller
        that something was written."""
        ...

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """A nested transaction: rolled back alone when its block raises (the exception propagates)."""
        ...

    def appended(self, key: bytes) -> None:
        """Announce, at commit, an append to conversation ``key`` (or a Welcome delivered to the inbox
        ``delivery.inbox_key``) to other processes (see ``on_append``)."""
        ...


class Database(Protocol):
    dialect: Dialect
    kind: str  # "sqlite", "memory" or "postgres" (what /api/health reports)

    async def run(self, fn: Callable[[Tx], _T]) -> _T:
        """Run ``fn`` in one transaction; see the module docstring."""
        ...

    def on_append(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(key)`` on the event loop when ANOTHER process sharing the database appends
        to a conversation or delivers a Welcome (``Tx.appended`` announced ``key``). A no-op where the engine
        cannot tell (SQLite: other processes' appends are seen by the long polls' re-reads)."""
        ...

    async def close(self) -> None: ...
