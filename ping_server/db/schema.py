"""The delivery service's schema (:data:`SCHEMA_VERSION`) and the migrations that bring an older
database up to it, the same SQL on both engines.

:func:`create_schema` runs inside the transaction that opens a database: it creates the schema in
an empty one, or applies :data:`MIGRATIONS` in order from the database's version (each one a named
function: its SQL steps, and the data it must convert), all in that one transaction, so a failed
migration leaves the database as it was. A database of an unknown (newer) schema is refused.
The stored layout is documented in docs/formats.md and docs/server.md (Storage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .common import DatabaseUnavailable, Dialect, Tx

__all__ = ["SCHEMA_VERSION", "DATA_TABLES", "Migration", "MIGRATIONS", "create_schema"]

SCHEMA_VERSION = "6"

# Portable DDL: {blob} is the binary type, {norowid} SQLite's WITHOUT ROWID for small keyed rows.
# Counters kept in the same transaction as the rows they count (never summed per request):
# accounts.stored_bytes (the account's devices' log envelopes, Welcome payloads and KeyPackages),
# conversations.bytes (its log), devices.inbox_* (its Welcome inbox as the recipient downloads it:
# each entry's full size) and devices.kp_bytes (its one-time KeyPackages).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    user_id {blob} PRIMARY KEY, public_key {blob} NOT NULL, stored_bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE IF NOT EXISTS devices (
    device_id {blob} PRIMARY KEY,
    user_id {blob} NOT NULL,
    reg_seq BIGINT NOT NULL,
    signing_key {blob} NOT NULL,
    info {blob} NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    last_resort {blob},
    kp_next BIGINT NOT NULL DEFAULT 1,
    inbox_next BIGINT NOT NULL DEFAULT 1,
    inbox_count BIGINT NOT NULL DEFAULT 0,
    inbox_bytes BIGINT NOT NULL DEFAULT 0,
    inbox_strangers BIGINT NOT NULL DEFAULT 0,
    inbox_stranger_bytes BIGINT NOT NULL DEFAULT 0,
    kp_bytes BIGINT NOT NULL DEFAULT 0,
    kp_window BIGINT NOT NULL DEFAULT 0,
    kp_window_claims BIGINT NOT NULL DEFAULT 0,
    revocation {blob},
    revocation_seq BIGINT
);
CREATE INDEX IF NOT EXISTS devices_by_user ON devices (user_id, reg_seq);
CREATE INDEX IF NOT EXISTS devices_revocations ON devices (user_id, revocation_seq) WHERE revocation IS NOT NULL;
CREATE TABLE IF NOT EXISTS key_packages (
    device_id {blob} NOT NULL, n BIGINT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (device_id, n)
);
CREATE TABLE IF NOT EXISTS kp_claims (
    device_id {blob} NOT NULL, claimer {blob} NOT NULL, win BIGINT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (device_id, claimer)
){norowid};
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id {blob} PRIMARY KEY,
    next_seq BIGINT NOT NULL,
    epoch BIGINT,
    created_by {blob} NOT NULL,
    created_ms BIGINT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0
){norowid};
CREATE TABLE IF NOT EXISTS members (
    conversation_id {blob} NOT NULL, device_id {blob} NOT NULL, end_seq BIGINT, consent INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, device_id)
){norowid};
CREATE INDEX IF NOT EXISTS members_by_device ON members (device_id);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id {blob} NOT NULL, seq BIGINT NOT NULL, size BIGINT NOT NULL, envelope {blob} NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS welcome_payloads (
    id BIGINT PRIMARY KEY, sender_user {blob} NOT NULL, conversation_id {blob} NOT NULL, refs BIGINT NOT NULL,
    size BIGINT NOT NULL, envelope {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, payload_id BIGINT NOT NULL, size BIGINT NOT NULL,
    conversation_id {blob} NOT NULL, stranger {blob},
    PRIMARY KEY (device_id, seq)
){norowid};
CREATE INDEX IF NOT EXISTS welcomes_by_stranger ON welcomes (device_id, stranger) WHERE stranger IS NOT NULL;
CREATE TABLE IF NOT EXISTS public_groups (
    conversation_id {blob} PRIMARY KEY, epoch BIGINT NOT NULL, state {blob} NOT NULL, group_info {blob} NOT NULL,
    welcome_to {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    ts_ms BIGINT NOT NULL, device_id {blob} NOT NULL, nonce {blob} NOT NULL, PRIMARY KEY (ts_ms, device_id, nonce)
){norowid};
CREATE TABLE IF NOT EXISTS push_subscriptions (
    device_id {blob} NOT NULL, endpoint TEXT NOT NULL, p256dh {blob} NOT NULL, auth {blob} NOT NULL, created_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, endpoint)
);
CREATE TABLE IF NOT EXISTS push_keys (name TEXT PRIMARY KEY, private_key {blob} NOT NULL);
"""

# Schema 1 -> 2: members gain end_seq (a removed device reads up to the Commit that removed it);
# nonces are keyed by time first (pruning is a range of the key; no second index to maintain).
# Nonce rows are copied: dropping them would let requests of the last minutes be replayed.
_MIGRATE_1_TO_2 = """
ALTER TABLE members ADD COLUMN end_seq BIGINT;
CREATE TABLE nonces_v2 (
    ts_ms BIGINT NOT NULL, device_id {blob} NOT NULL, nonce {blob} NOT NULL, PRIMARY KEY (ts_ms, device_id, nonce)
){norowid};
INSERT INTO nonces_v2 (ts_ms, device_id, nonce) SELECT ts_ms, device_id, nonce FROM nonces;
DROP TABLE nonces;
ALTER TABLE nonces_v2 RENAME TO nonces
"""

# Schema 2 -> 3: the incremental counters (filled from the data below), members' consent, the
# KeyPackage claim counters, and Welcome payloads stored once (welcomes rows reference them).
# Each old inbox row becomes a payload of its own (see _migrate_welcomes_2_to_3).
_MIGRATE_2_TO_3 = """
ALTER TABLE accounts ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_strangers BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN inbox_stranger_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN kp_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN kp_window BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN kp_window_claims BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN consent INTEGER NOT NULL DEFAULT 1;
CREATE TABLE kp_claims (
    device_id {blob} NOT NULL, claimer {blob} NOT NULL, win BIGINT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (device_id, claimer)
){norowid};
CREATE TABLE welcome_payloads (
    id BIGINT PRIMARY KEY, sender_user {blob} NOT NULL, conversation_id {blob} NOT NULL, refs BIGINT NOT NULL,
    size BIGINT NOT NULL, envelope {blob} NOT NULL
);
ALTER TABLE welcomes RENAME TO welcomes_v2;
CREATE TABLE welcomes (
    device_id {blob} NOT NULL, seq BIGINT NOT NULL, payload_id BIGINT NOT NULL, size BIGINT NOT NULL,
    conversation_id {blob} NOT NULL, stranger {blob},
    PRIMARY KEY (device_id, seq)
){norowid};
CREATE INDEX welcomes_by_stranger ON welcomes (device_id, stranger) WHERE stranger IS NOT NULL;
INSERT INTO counters (name, value) VALUES ('welcome', 0) ON CONFLICT DO NOTHING
"""

# Counters of the migrated data (one pass each, once). Log envelopes stored before schema 3 count
# in their conversation's bytes but in no account's: schema 2 did not record who posted them.
_MIGRATE_2_TO_3_COUNTS = """
UPDATE conversations SET bytes = COALESCE((SELECT SUM(m.size) FROM messages m WHERE m.conversation_id = conversations.conversation_id), 0);
UPDATE devices SET kp_bytes = COALESCE((SELECT SUM(LENGTH(k.data)) FROM key_packages k WHERE k.device_id = devices.device_id), 0);
UPDATE devices SET
    inbox_count = (SELECT COUNT(*) FROM welcomes w WHERE w.device_id = devices.device_id),
    inbox_bytes = COALESCE((SELECT SUM(w.size) FROM welcomes w WHERE w.device_id = devices.device_id), 0);
UPDATE accounts SET stored_bytes =
    COALESCE((SELECT SUM(d.kp_bytes + COALESCE(LENGTH(d.last_resort), 0)) FROM devices d WHERE d.user_id = accounts.user_id), 0)
    + COALESCE((SELECT SUM(p.size) FROM welcome_payloads p WHERE p.sender_user = accounts.user_id), 0)
"""

# Schema 3 -> 4: devices keep the account's signed revocation statement (a DeviceRevocation) and
# the order it came in. Devices revoked before have neither (they stay revoked: the flag is kept).
_MIGRATE_3_TO_4 = """
ALTER TABLE devices ADD COLUMN revocation {blob};
ALTER TABLE devices ADD COLUMN revocation_seq BIGINT;
CREATE INDEX devices_revocations ON devices (user_id, revocation_seq) WHERE revocation IS NOT NULL
"""

# Schema 4 -> 5: verified conversations (ping_core.transport.handshake): the public group state,
# the latest GroupInfo and the devices the latest Commit added. Existing conversations have no
# row: they keep the routing rules until a Commit brings a GroupInfo.
_MIGRATE_4_TO_5 = """
CREATE TABLE public_groups (
    conversation_id {blob} PRIMARY KEY, epoch BIGINT NOT NULL, state {blob} NOT NULL, group_info {blob} NOT NULL,
    welcome_to {blob} NOT NULL
)
"""

# Schema 5 -> 6: Web Push (ping_server.push): the devices' push subscriptions (RFC 8030 endpoint,
# RFC 8291 keys) and the server's VAPID key pair (RFC 8292), generated once and kept here.
_MIGRATE_5_TO_6 = """
CREATE TABLE push_subscriptions (
    device_id {blob} NOT NULL, endpoint TEXT NOT NULL, p256dh {blob} NOT NULL, auth {blob} NOT NULL, created_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, endpoint)
);
CREATE TABLE push_keys (name TEXT PRIMARY KEY, private_key {blob} NOT NULL)
"""

# Tables that hold the service's data (the nonce table is authentication bookkeeping).
DATA_TABLES = (
    "accounts", "devices", "key_packages", "conversations", "members", "messages", "welcomes", "welcome_payloads", "kp_claims",
    "public_groups", "push_subscriptions",
)


def _statements(script: str, dialect: Dialect) -> list[str]:
    return [stmt for stmt in script.format(blob=dialect.blob, norowid=dialect.norowid).split(";") if stmt.strip()]


def _run_script(tx: Tx, script: str) -> None:
    """Run each statement of ``script`` (``;``-separated, in the transaction's dialect), in order."""
    for stmt in _statements(script, tx.dialect):
        tx.execute(stmt)


def _migrate_1_to_2(tx: Tx) -> None:
    _run_script(tx, _MIGRATE_1_TO_2)


def _migrate_2_to_3(tx: Tx) -> None:
    """The new columns and tables, each old inbox row moved to a payload of its own, then the counters."""
    _run_script(tx, _MIGRATE_2_TO_3)
    _migrate_welcomes_2_to_3(tx)
    tx.execute("DROP TABLE welcomes_v2")
    _run_script(tx, _MIGRATE_2_TO_3_COUNTS)


def _migrate_3_to_4(tx: Tx) -> None:
    _run_script(tx, _MIGRATE_3_TO_4)


def _migrate_4_to_5(tx: Tx) -> None:
    _run_script(tx, _MIGRATE_4_TO_5)


def _migrate_5_to_6(tx: Tx) -> None:
    _run_script(tx, _MIGRATE_5_TO_6)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step: ``apply(tx)`` turns a database of schema ``source`` into one of schema ``target``."""

    source: str
    target: str
    apply: Callable[[Tx], None]


# In order: each step's target is the next one's source, the last one's is SCHEMA_VERSION.
MIGRATIONS: tuple[Migration, ...] = (
    Migration("1", "2", _migrate_1_to_2),
    Migration("2", "3", _migrate_2_to_3),
    Migration("3", "4", _migrate_3_to_4),
    Migration("4", "5", _migrate_4_to_5),
    Migration("5", "6", _migrate_5_to_6),
)


def _migrations_from(version: str) -> tuple[Migration, ...]:
    """The steps from schema ``version`` to SCHEMA_VERSION; a version no step starts from is refused."""
    for i, step in enumerate(MIGRATIONS):
        if step.source == version:
            return MIGRATIONS[i:]
    raise DatabaseUnavailable(f"database schema {version} is not {SCHEMA_VERSION} (a newer server made it?)")


def create_schema(tx: Tx) -> None:
    """Create the schema in an empty database, or migrate an older one to ``SCHEMA_VERSION``
    (1 -> 2 -> 3 -> 4 -> 5 -> 6, in this one transaction); a newer one is refused."""
    if tx.dialect.name == "postgres":
        # Several processes may start at once; CREATE ... IF NOT EXISTS races in PostgreSQL.
        tx.execute("SELECT pg_advisory_xact_lock(7031985)")
    tx.execute("CREATE TABLE IF NOT EXISTS ping_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = tx.one("SELECT value FROM ping_meta WHERE name = 'schema'")
    version = None if row is None else str(row[0])
    if version is None:
        _run_script(tx, _SCHEMA)
        tx.execute("INSERT INTO ping_meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
    elif version != SCHEMA_VERSION:
        for step in _migrations_from(version):
            step.apply(tx)
        tx.execute("UPDATE ping_meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
    tx.execute("INSERT INTO counters (name, value) VALUES ('device', 0) ON CONFLICT DO NOTHING")
    tx.execute("INSERT INTO counters (name, value) VALUES ('welcome', 0) ON CONFLICT DO NOTHING")
    tx.execute("INSERT INTO counters (name, value) VALUES ('revocation', 0) ON CONFLICT DO NOTHING")


def _migrate_welcomes_2_to_3(tx: Tx) -> None:
    """Each schema-2 inbox row (a recipient's own copy) becomes one payload with one reference,
    charged to its sender's account; the envelope is decoded once for its conversation and sender
    (keyset pages of 500 rows, so memory stays bounded)."""
    from ping_core.errors import InvalidInput
    from ping_core.message import MessageEnvelope

    after: tuple[bytes, int] | None = None
    next_id = 0
    while True:
        if after is None:
            rows = tx.query("SELECT device_id, seq, size, envelope FROM welcomes_v2 ORDER BY device_id, seq LIMIT 500")
        else:
            rows = tx.query(
                "SELECT device_id, seq, size, envelope FROM welcomes_v2 WHERE device_id > ? OR (device_id = ? AND seq > ?)"
                " ORDER BY device_id, seq LIMIT 500",
                (after[0], after[0], after[1]),
            )
        if not rows:
            break
        for device_id, seq, size, envelope in rows:
            data = bytes(envelope)
            try:
                env = MessageEnvelope.decode(data)
            except InvalidInput:
                continue  # cannot happen (the server stored only what it decoded); dropped rather than kept unreadable
            sender = tx.one("SELECT user_id FROM devices WHERE device_id = ?", (env.sender_device.value,))
            sender_user = bytes(sender[0]) if sender is not None else env.sender_device.value
            next_id += 1
            tx.execute(
                "INSERT INTO welcome_payloads (id, sender_user, conversation_id, refs, size, envelope) VALUES (?, ?, ?, 1, ?, ?)",
                (next_id, sender_user, env.conversation_id.value, len(data), data),
            )
            tx.execute(
                "INSERT INTO welcomes (device_id, seq, payload_id, size, conversation_id, stranger) VALUES (?, ?, ?, ?, ?, NULL)",
                (bytes(device_id), int(seq), next_id, int(size), env.conversation_id.value),
            )
        after = (bytes(rows[-1][0]), int(rows[-1][1]))
    tx.execute("UPDATE counters SET value = ? WHERE name = 'welcome'", (next_id,))

