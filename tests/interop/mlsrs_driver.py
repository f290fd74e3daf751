"""docs/interop.md driver on top of AWS mls-rs (Rust), through its Python binding ``mls_rs_uniffi``.

    python tests/interop/mlsrs_driver.py     # needs `pip install agentvault-mls-rs-uniffi`

One process hosts any number of clients (by ``name``), each with at most one group, cipher suite 1
(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519) only. The binding exposes a small part of mls-rs, so
this driver answers ``unsupported`` for what it cannot do:

* ``epoch_authenticator`` and ``group_info`` (no accessor in the binding);
* ``encrypt_handshake: true`` (the binding's client config sends handshakes as PublicMessages);
* ``aad`` on ``protect`` (the binding takes no authenticated data);
* ``remove`` / ``propose_remove`` of a member not hosted by this driver, and by ``leaf_indices`` /
  ``leaf_index`` (the binding names members only by a ``SigningIdentity`` object, which it hands out
  for its own clients alone, and has no roster);
* ``update`` while by-reference proposals are pending (its ``commit`` always includes them).

``state`` reports ``epoch``, ``group_id`` and ``active`` (no roster or tree hash in the binding).

Every response carries ``elapsed_us`` and ``cpu_us``: the wall-clock and CPU microseconds the driver
spent on the request, from the parsed request to the built response (docs/interop.md, optional
fields), so that benchmarks measure the implementation and not process start-up or the JSON lines. One piece is left out: after ``join``
the binding says neither the epoch nor the group id, so the driver writes the group to its
in-memory store and reads both from the stored state (bookkeeping the binding forces, not part of
joining; see ``_joined_context``).

mls-rs applies a commit its client created only when the client processes that commit (its
"pending commit"); the driver does so before answering, as docs/interop.md requires.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import mls_rs_uniffi as mls

# The request loop is Ping's (the same answer shape, id echo and elapsed_us for every driver);
# the runner puts the checkout on PYTHONPATH.
from ping_core.mls.interop import DriverError, answer, client_of, hex_field, need_field, serve

Json = dict[str, Any]
SUITE = mls.CipherSuite.CURVE25519_AES128


def _speed_up_binding() -> None:
    """Let the binding copy bytes into Rust buffers with one memmove instead of a Python loop.

    The generated binding (uniffi) writes every byte of an argument (a KeyPackage, a Welcome)
    into the Rust buffer one at a time in Python, which for a Welcome of a large group costs more
    than mls-rs's own work. Benchmarks compare implementations, so the driver replaces that loop
    by the same copy done at once: the bytes that reach mls-rs are identical.
    """
    builder = mls.mls_rs_uniffi._UniffiRustBufferBuilder

    def write(self: Any, value: bytes) -> None:
        with self._reserve(len(value)):
            ctypes.memmove(ctypes.addressof(self.rbuf.data.contents) + self.rbuf.len, bytes(value), len(value))

    def pack_into(self: Any, size: int, fmt: str, value: Any) -> None:
        write(self, struct.pack(fmt, value))

    builder.write = write
    builder._pack_into = pack_into


_speed_up_binding()


def _unsupported(what: str) -> DriverError:
    return DriverError(f"unsupported: {what} (the mls_rs_uniffi binding does not offer it)")


class _Store(mls.GroupStateStorage):  # type: ignore[misc]
    """A client's group-state storage (mls-rs calls it on ``write_to_storage`` and ``load_group``)."""

    def __init__(self) -> None:
        self.states: dict[bytes, bytes] = {}
        self.epochs: dict[tuple[bytes, int], bytes] = {}
        self.last_group_id: bytes | None = None

    def state(self, group_id: bytes) -> bytes | None:
        return self.states.get(group_id)

    def epoch(self, group_id: bytes, epoch_id: int) -> bytes | None:
        return self.epochs.get((group_id, epoch_id))

    def write(self, group_id: bytes, group_state: bytes, epoch_inserts: list[Any], epoch_updates: list[Any]) -> None:
        self.states[group_id] = group_state
        self.last_group_id = group_id
        for record in [*epoch_inserts, *epoch_updates]:
            self.epochs[(group_id, record.id)] = record.data

    def max_epoch_id(self, group_id: bytes) -> int | None:
        ids = [e for (g, e) in self.epochs if g == group_id]
        return max(ids) if ids else None


class _Client:
    """One named client: its mls-rs Client, storage, group, and the epoch the driver tracks."""

    def __init__(self, name: str, identity: bytes) -> None:
        self.name = name
        self.identity = identity
        self.store = _Store()
        keypair = mls.generate_signature_keypair(SUITE)
        config = mls.ClientConfig(group_state_storage=self.store, use_ratchet_tree_extension=True)
        self.client = mls.Client(identity, keypair, config)
        self.signing_identity = self.client.signing_identity()
        self.group: Any = None
        self.group_id = b""
        self.epoch = 0
        self.active = False
        self.pending_proposals = 0


def _message(hex_value: Any, field: str) -> Any:
    raw = hex_field({field: hex_value}, field)
    try:
        return mls.Message.from_bytes(raw)
    except mls.Error as e:
        raise DriverError(f"{field}: {e}") from None


def _joined_context(store: _Store) -> tuple[bytes, int]:
    """The group id and epoch of the group just written to ``store``.

    mls-rs stores a group as a snapshot whose state starts, after a 2-byte snapshot version, with
    the GroupContext in its RFC 9420 §8.1 encoding: version (u16), cipher_suite (u16),
    group_id<V>, epoch (u64). The id is checked against the one mls-rs wrote the state under.
    """
    gid = store.last_group_id
    if gid is None:
        raise DriverError("mls-rs wrote no group state after join")
    state = store.states[gid]
    if len(gid) >= 64:
        raise DriverError("group ids of 64 bytes or more are not read back by this driver")
    head = b"\x00\x01\x00\x01\x00\x01" + bytes([len(gid)]) + gid
    if not state.startswith(head) or len(state) < len(head) + 8:
        raise DriverError("mls-rs group state has an unexpected layout: cannot read the epoch")
    return gid, int.from_bytes(state[len(head):len(head) + 8], "big")


class Driver:
    """The request handlers; :meth:`handle` maps one request line to one response object."""

    def __init__(self) -> None:
        self.clients: dict[str, _Client] = {}
        self.ops: dict[str, Callable[[Json], Json]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }
        self._excluded = (0.0, 0.0)

    @contextmanager
    def _untimed(self) -> Iterator[None]:
        """Leave a piece of driver bookkeeping out of the request's ``elapsed_us`` and ``cpu_us``."""
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            wall, cpu = self._excluded
            self._excluded = (wall + time.perf_counter() - started, cpu + time.process_time() - started_cpu)

    # -- helpers -------------------------------------------------------------

    def _client(self, req: Json) -> _Client:
        return client_of(self.clients, req, _Client)

    def _group(self, req: Json, *, active: bool = True) -> _Client:
        c = self._client(req)
        if c.group is None:
            raise DriverError(f"client {c.name} has no group")
        if active and not c.active:
            raise DriverError(f"client {c.name} is not an active member")
        return c

    @staticmethod
    def _plain_handshake(req: Json) -> None:
        if req.get("encrypt_handshake") is True:
            raise _unsupported("encrypt_handshake (PrivateMessage handshakes)")

    def _hosted(self, identity: bytes, what: str) -> Any:
        found = [c for c in self.clients.values() if c.identity == identity]
        if len(found) != 1:
            raise _unsupported(f"{what}: only members hosted by this driver can be named")
        return found[0].signing_identity

    def _commit_response(self, c: _Client, out: Any) -> Json:
        # mls-rs keeps its own commit pending until the client processes it.
        c.group.process_incoming_message(out.commit_message)
        c.epoch += 1
        c.pending_proposals = 0
        resp: Json = {"commit": out.commit_message.to_bytes().hex(), "epoch": c.epoch}
        if out.welcome_message is not None:
            resp["welcome"] = out.welcome_message.to_bytes().hex()
            resp["ratchet_tree"] = c.group.export_tree().bytes.hex()
        return resp

    def _ratchet_tree_extension(self, req: Json) -> None:
        if req.get("ratchet_tree_extension") is False:
            raise _unsupported("ratchet_tree_extension: false (the client config fixes it)")

    # -- ops -----------------------------------------------------------------

    def op_hello(self, req: Json) -> Json:
        return {"impl": "mls-rs", "version": importlib.metadata.version("agentvault-mls-rs-uniffi"),
                "ciphersuites": [1]}

    def op_key_package(self, req: Json) -> Json:
        suite = req.get("cipher_suite", 1)
        if suite != 1:
            raise DriverError(f"unsupported cipher suite {suite} (driver offers 1)")
        c = self._client(req)
        return {"key_package": c.client.generate_key_package_message().to_bytes().hex()}

    def op_create_group(self, req: Json) -> Json:
        c = self._client(req)
        if c.group is not None and c.active:
            raise DriverError(f"client {c.name} already has a group")
        c.group_id = hex_field(req, "group_id")
        c.group = c.client.create_group(c.group_id)
        c.epoch, c.active, c.pending_proposals = 0, True, 0
        return {"epoch": 0, "leaf_index": 0}

    def op_add(self, req: Json) -> Json:
        c = self._group(req)
        self._plain_handshake(req)
        self._ratchet_tree_extension(req)
        kps = need_field(req, "key_packages")
        if not isinstance(kps, list) or not kps:
            raise DriverError("key_packages must be a non-empty list")
        messages = [_message(k, "key_packages") for k in kps]
        return self._commit_response(c, c.group.add_members(messages))

    def op_update(self, req: Json) -> Json:
        c = self._group(req)
        self._plain_handshake(req)
        if c.pending_proposals:
            raise _unsupported("update while proposals are pending (its commit would include them)")
        return self._commit_response(c, c.group.commit())

    def op_commit(self, req: Json) -> Json:
        c = self._group(req)
        self._plain_handshake(req)
        self._ratchet_tree_extension(req)
        return self._commit_response(c, c.group.commit())

    def _targets(self, req: Json) -> list[Any]:
        if "leaf_indices" in req or "leaf_index" in req:
            raise _unsupported("members named by leaf index (the binding has no roster)")
        out = [self._hosted(str(m).encode("utf-8"), f"member {m}") for m in req.get("members", [])]
        out += [self._hosted(hex_field({"i": h}, "i"), f"identity {h}") for h in req.get("identities", [])]
        if "member" in req:
            out.append(self._hosted(str(req["member"]).encode("utf-8"), f"member {req['member']}"))
        if "identity" in req:
            out.append(self._hosted(hex_field(req, "identity"), "identity"))
        if not out:
            raise DriverError("remove needs members or identities")
        return out

    def op_remove(self, req: Json) -> Json:
        c = self._group(req)
        self._plain_handshake(req)
        return self._commit_response(c, c.group.remove_members(self._targets(req)))

    def op_propose_add(self, req: Json) -> Json:
        c = self._group(req)
        self._plain_handshake(req)
        proposals = c.group.propose_add_members([_message(need_field(req, "key_package"), "key_package")])
        c.pending_proposals += 1
        return {"proposal": proposals[0].to_bytes().hex()}

    def op_propose_remove(self, req: Json) -> Json:
        c = self._group(req)
        self._plain_handshake(req)
        proposals = c.group.propose_remove_members(self._targets(req))
        c.pending_proposals += 1
        return {"proposal": proposals[0].to_bytes().hex()}

    def op_join(self, req: Json) -> Json:
        c = self._client(req)
        if c.group is not None and c.active:
            raise DriverError(f"client {c.name} already has a group")
        tree = mls.RatchetTree(bytes=hex_field(req, "ratchet_tree")) if "ratchet_tree" in req else None
        welcome = _message(need_field(req, "welcome"), "welcome")
        try:
            info = c.client.join_group(tree, welcome)
        except mls.Error as e:
            raise DriverError(f"join: {e}") from None
        c.group = info.group
        with self._untimed():
            c.group.write_to_storage()
            c.group_id, c.epoch = _joined_context(c.store)
        c.active, c.pending_proposals = True, 0
        return {"epoch": c.epoch, "group_id": c.group_id.hex()}

    def op_protect(self, req: Json) -> Json:
        c = self._group(req)
        if "aad" in req:
            raise _unsupported("aad on protect")
        return {"message": c.group.encrypt_application_message(hex_field(req, "data")).to_bytes().hex()}

    def op_process(self, req: Json) -> Json:
        c = self._group(req, active=False)
        message = _message(need_field(req, "message"), "message")
        try:
            got = c.group.process_incoming_message(message)
        except mls.Error as e:
            raise DriverError(f"process: {e}") from None
        if got.is_application_message():
            return {"application_data": got.data.hex()}
        if got.is_received_proposal():
            c.pending_proposals += 1
            return {"proposal_stored": True}
        if got.is_commit():
            c.pending_proposals = 0
            if got.effect.is_removed():
                c.active = False
                return {"removed": True, "commit_applied": True}
            c.epoch += 1
            return {"commit_applied": True, "epoch": c.epoch}
        raise DriverError(f"unexpected message kind {type(got).__name__}")

    def op_export(self, req: Json) -> Json:
        c = self._group(req, active=False)
        length = need_field(req, "length")
        if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= 0xFFFF:
            raise DriverError("length must be 0..65535")
        if "label" in req:
            if not isinstance(req["label"], str):
                raise DriverError("label must be text")
            label = req["label"].encode("utf-8")
        else:
            label = hex_field(req, "label_hex")
        return {"secret": c.group.export_secret(label, hex_field(req, "context"), length).hex()}

    def op_epoch_authenticator(self, req: Json) -> Json:
        raise _unsupported("epoch_authenticator")

    def op_group_info(self, req: Json) -> Json:
        raise _unsupported("group_info")

    def op_state(self, req: Json) -> Json:
        c = self._group(req, active=False)
        return {"epoch": c.epoch, "group_id": c.group_id.hex(), "active": c.active}

    def op_ratchet_tree(self, req: Json) -> Json:
        c = self._group(req, active=False)
        return {"ratchet_tree": c.group.export_tree().bytes.hex()}

    # -- the loop ------------------------------------------------------------

    def handle(self, line: str) -> Json:
        """One request line to one response object (never raises)."""
        self._excluded = (0.0, 0.0)
        return answer(line, self.ops, own_error=DriverError, known_errors=(DriverError, mls.Error),
                      excluded=lambda: self._excluded, who="mlsrs_driver")


def main() -> int:
    serve(Driver().handle, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
