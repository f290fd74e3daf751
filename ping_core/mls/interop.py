"""``python -m ping_core.mls.interop``: Ping's MLS engine as an interop driver.

Speaks the interop driver protocol the rig in ``tests/interop`` drives (its
``tsmls_driver.mjs`` is the other implementation): newline-delimited JSON,
one request object per stdin line, exactly one response line per request on
stdout, in order; binary values are lowercase hex; MLS objects are
TLS-serialized MLSMessages. Every successful response carries ``elapsed_us`` and
``cpu_us``, the wall-clock and CPU microseconds the handler took (request parsed
to response built). One process hosts any number of clients (by
``name``), each with at most one group. Beyond the common operations it offers
``external_join`` (``{"op":"external_join","name","group_info"[,"ratchet_tree"]}``
-> ``{commit, epoch, group_id, leaf_index}``).

Handshake messages are PublicMessages unless ``encrypt_handshake`` is true;
Welcomes carry the ratchet tree unless ``ratchet_tree_extension`` is false.

``PING_INTEROP_BARE_EXTERNAL_PUB=1`` makes ``group_info`` write the
external_pub extension the way ts-mls 1.x (up to 2.0.0-rc.10) reads it: the
bare 32-byte key instead of RFC 9420's length-prefixed ``ExternalPub``
struct (ts-mls fixed its codec in PR #449, not yet in a release). Ping reads
both forms, so the switch only matters to ts-mls joiners. Off by default:
Ping's engine always writes the RFC form.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Mapping, TextIO, TypeVar

from ping_core.errors import PingError
from ping_core.mls.tls import decode_exact, encode
from ping_core.mls.crypto import CryptoProvider, default_provider
from ping_core.mls.group import (
    ApplicationMessage,
    Clock,
    CommitApplied,
    Group,
    GroupConfig,
    KeyPackageBundle,
    ProposalStored,
    Signer,
    generate_key_package,
)
from ping_core.mls.structs import Extension, ExternalPub, GroupInfo, MLSMessage
from ping_core.mls.welcome_seal import sign_group_info

__all__ = ["Driver", "DriverError", "answer", "client_of", "hex_field", "main", "need_field", "serve"]

IMPL = "ping"
VERSION = "0.1.0"

Json = dict[str, Any]


class DriverError(Exception):
    """A request the driver cannot serve (bad field, unknown client, ...)."""


class _Client:
    __slots__ = ("name", "signer", "bundles", "group")

    def __init__(self, name: str, signer: Signer) -> None:
        self.name = name
        self.signer = signer
        self.bundles: dict[bytes, KeyPackageBundle] = {}
        self.group: Group | None = None


def hex_field(req: Json, field: str) -> bytes:
    """``req[field]`` as bytes: it must be lowercase hex of even length (docs/interop.md)."""
    value = req.get(field)
    if isinstance(value, str):
        # fromhex also takes upper case and spaces: the round trip admits exactly lowercase hex
        # (one pass in C, where a regular expression over a Welcome's hex took milliseconds).
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            pass
        else:
            if raw.hex() == value:
                return raw
    raise DriverError(f"field {field} must be lowercase hex of even length")


def need_field(req: Json, field: str) -> Any:
    """``req[field]``, or DriverError when the request lacks it."""
    if field not in req:
        raise DriverError(f"missing field {field}")
    return req[field]


C = TypeVar("C")


def client_of(clients: dict[str, C], req: Json, make: Callable[[str, bytes], C]) -> C:
    """The client ``req["name"]`` names, made by ``make(name, identity)`` on its first use; its
    identity is ``req["identity"]`` (hex) if given, else the UTF-8 of the name (docs/interop.md)."""
    name = need_field(req, "name")
    if not isinstance(name, str):
        raise DriverError("name must be a string")
    c = clients.get(name)
    if c is None:
        identity = hex_field(req, "identity") if "identity" in req else name.encode("utf-8")
        c = clients[name] = make(name, identity)
    return c


class Driver:
    """The request handlers; :meth:`handle` maps one request to one response."""

    def __init__(self, clock: Clock, crypto: CryptoProvider | None = None) -> None:
        """``clock``: the time the driver's groups and KeyPackages are dated with (seconds)."""
        self.clock = clock
        self.crypto = crypto or default_provider()
        self.clients: dict[str, _Client] = {}
        self.ops: dict[str, Callable[[Json], Json]] = {
            name[3:]: getattr(self, name) for name in dir(self) if name.startswith("op_")
        }

    # -- helpers -------------------------------------------------------------

    def _client(self, req: Json) -> _Client:
        return client_of(self.clients, req, lambda name, identity: _Client(name, Signer.generate(self.crypto, identity)))

    def _group(self, req: Json, *, active: bool = True) -> tuple[_Client, Group]:
        c = self._client(req)
        if c.group is None:
            raise DriverError(f"client {c.name} has no group")
        if active and not c.group.active:
            raise DriverError(f"client {c.name} is not an active member")
        return c, c.group

    @staticmethod
    def _encrypt(req: Json) -> bool:
        return req.get("encrypt_handshake") is True

    @staticmethod
    def _rt_ext(req: Json) -> bool:
        return req.get("ratchet_tree_extension") is not False

    def _leaf_for_identity(self, group: Group, identity: bytes, what: str) -> int:
        found = group.leaf_of(identity=identity)
        if len(found) != 1:
            raise DriverError(f"{what}: {len(found)} members have that identity")
        return found[0]

    def _commit_response(self, group: Group, staged: Any) -> Json:
        group.merge_staged_commit(staged)
        out: Json = {"commit": staged.message.hex(), "epoch": group.epoch}
        if staged.welcome is not None:
            out["welcome"] = staged.welcome.hex()
            out["ratchet_tree"] = group.ratchet_tree().hex()
        return out

    # -- ops -----------------------------------------------------------------

    def op_hello(self, req: Json) -> Json:
        return {"impl": IMPL, "version": VERSION, "ciphersuites": [1]}

    def op_key_package(self, req: Json) -> Json:
        suite = req.get("cipher_suite", 1)
        if suite != 1:
            raise DriverError(f"unsupported cipher suite {suite} (driver offers 1)")
        c = self._client(req)
        bundle = generate_key_package(self.crypto, c.signer, now=int(self.clock()))
        c.bundles[bundle.ref] = bundle
        return {"key_package": bundle.message().hex()}

    def op_create_group(self, req: Json) -> Json:
        c = self._client(req)
        if c.group is not None and c.group.active:
            raise DriverError(f"client {c.name} already has a group")
        c.group = Group.create(
            self.crypto, c.signer, clock=self.clock, group_id=hex_field(req, "group_id"), config=GroupConfig(encrypt_handshake=False)
        )
        return {"epoch": c.group.epoch, "leaf_index": c.group.own_leaf_index}

    def op_add(self, req: Json) -> Json:
        _, g = self._group(req)
        kps = need_field(req, "key_packages")
        if not isinstance(kps, list) or not kps:
            raise DriverError("key_packages must be a non-empty list")
        add = [hex_field({"k": k}, "k") for k in kps]
        staged = g.commit(add=add, encrypt=self._encrypt(req), ratchet_tree_extension=self._rt_ext(req))
        return self._commit_response(g, staged)

    def op_update(self, req: Json) -> Json:
        _, g = self._group(req)
        staged = g.commit(include_pending=False, encrypt=self._encrypt(req), ratchet_tree_extension=self._rt_ext(req))
        return self._commit_response(g, staged)

    def op_commit(self, req: Json) -> Json:
        _, g = self._group(req)
        staged = g.commit(encrypt=self._encrypt(req), ratchet_tree_extension=self._rt_ext(req))
        return self._commit_response(g, staged)

    def op_remove(self, req: Json) -> Json:
        _, g = self._group(req)
        targets: list[int] = []
        for m in req.get("members", []):
            targets.append(self._leaf_for_identity(g, str(m).encode("utf-8"), f"member {m}"))
        for h in req.get("identities", []):
            targets.append(self._leaf_for_identity(g, hex_field({"i": h}, "i"), f"identity {h}"))
        for i in req.get("leaf_indices", []):
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise DriverError("leaf_indices must be non-negative integers")
            targets.append(i)
        if not targets:
            raise DriverError("remove needs members, leaf_indices or identities")
        staged = g.commit(remove=targets, encrypt=self._encrypt(req), ratchet_tree_extension=self._rt_ext(req))
        return self._commit_response(g, staged)

    def op_propose_add(self, req: Json) -> Json:
        _, g = self._group(req)
        p = g.propose_add(hex_field(req, "key_package"), encrypt=self._encrypt(req))
        return {"proposal": p.message.hex()}

    def op_propose_remove(self, req: Json) -> Json:
        _, g = self._group(req)
        if "leaf_index" in req:
            target = req["leaf_index"]
            if not isinstance(target, int) or isinstance(target, bool) or target < 0:
                raise DriverError("leaf_index must be a non-negative integer")
        elif "identity" in req:
            target = self._leaf_for_identity(g, hex_field(req, "identity"), "identity")
        elif "member" in req:
            target = self._leaf_for_identity(g, str(req["member"]).encode("utf-8"), f"member {req['member']}")
        else:
            raise DriverError("propose_remove needs leaf_index, identity or member")
        p = g.propose_remove(target, encrypt=self._encrypt(req))
        return {"proposal": p.message.hex()}

    def op_join(self, req: Json) -> Json:
        c = self._client(req)
        if c.group is not None and c.group.active:
            raise DriverError(f"client {c.name} already has a group")
        tree = hex_field(req, "ratchet_tree") if "ratchet_tree" in req else None
        g = Group.join(
            self.crypto, hex_field(req, "welcome"), c.bundles, c.signer, ratchet_tree=tree, config=GroupConfig(encrypt_handshake=False),
            clock=self.clock,
        )  # fmt: skip
        c.group = g
        # A KeyPackage is used once: drop the one the Welcome named.
        own_key = g.member(g.own_leaf_index)
        for ref, b in list(c.bundles.items()):
            if own_key is not None and b.key_package.leaf_node.encryption_key == own_key.encryption_key:
                del c.bundles[ref]
        return {"epoch": g.epoch, "group_id": g.group_id.hex(), "leaf_index": g.own_leaf_index}

    def op_external_join(self, req: Json) -> Json:
        c = self._client(req)
        if c.group is not None and c.group.active:
            raise DriverError(f"client {c.name} already has a group")
        tree = hex_field(req, "ratchet_tree") if "ratchet_tree" in req else None
        g, commit = Group.join_external(
            self.crypto, hex_field(req, "group_info"), c.signer, ratchet_tree=tree, config=GroupConfig(encrypt_handshake=False),
            clock=self.clock,
        )  # fmt: skip
        c.group = g
        return {"commit": commit.hex(), "epoch": g.epoch, "group_id": g.group_id.hex(), "leaf_index": g.own_leaf_index}

    def op_protect(self, req: Json) -> Json:
        _, g = self._group(req)
        aad = hex_field(req, "aad") if "aad" in req else b""
        return {"message": g.protect(hex_field(req, "data"), aad).hex()}

    def op_process(self, req: Json) -> Json:
        _, g = self._group(req, active=False)
        result = g.process_message(hex_field(req, "message"))
        if isinstance(result, ApplicationMessage):
            return {"application_data": result.data.hex()}
        if isinstance(result, ProposalStored):
            return {"proposal_stored": True}
        if isinstance(result, CommitApplied):
            if result.removed_self:
                return {"removed": True, "commit_applied": True}
            return {"commit_applied": True, "epoch": result.epoch}
        raise DriverError(f"unexpected result {type(result).__name__}")  # pragma: no cover

    def op_export(self, req: Json) -> Json:
        _, g = self._group(req, active=False)
        context = hex_field(req, "context")
        length = need_field(req, "length")
        if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= 0xFFFF:
            raise DriverError("length must be 0..65535")
        if "label" in req:
            label = req["label"]
            if not isinstance(label, str):
                raise DriverError("label must be text")
            raw = label.encode("utf-8")
        else:
            raw = hex_field(req, "label_hex")
        return {"secret": g.export_secret(raw, context, length).hex()}

    def op_epoch_authenticator(self, req: Json) -> Json:
        _, g = self._group(req, active=False)
        return {"epoch_authenticator": g.epoch_authenticator.hex()}

    def op_state(self, req: Json) -> Json:
        _, g = self._group(req, active=False)
        return {
            "epoch": g.epoch,
            "group_id": g.group_id.hex(),
            "leaf_index": g.own_leaf_index,
            "tree_hash": g.tree_hash.hex(),
            "epoch_authenticator": g.epoch_authenticator.hex(),
            "members": [
                {"leaf_index": m.leaf_index, "identity": m.identity.hex(), "signature_key": m.signature_key.hex()}
                for m in g.members()
            ],
            "active": g.active,
        }

    def op_group_info(self, req: Json) -> Json:
        _, g = self._group(req)
        info = g.group_info()
        if os.environ.get("PING_INTEROP_BARE_EXTERNAL_PUB") == "1":
            info = _bare_external_pub(self.crypto, g, info)
        return {"group_info": info.hex()}

    def op_ratchet_tree(self, req: Json) -> Json:
        _, g = self._group(req, active=False)
        return {"ratchet_tree": g.ratchet_tree().hex()}

    # -- the loop ------------------------------------------------------------

    def handle(self, line: str) -> Json:
        """One request line to one response object (never raises)."""
        return answer(line, self.ops, own_error=DriverError, known_errors=(DriverError, PingError))


def answer(
    line: str,
    ops: Mapping[str, Callable[[Json], Json]],
    *,
    own_error: type[Exception],
    known_errors: tuple[type[Exception], ...],
    excluded: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0),
    who: str = "interop",
) -> Json:
    """One request line to one response object, for any driver's table of ``ops`` (never raises).

    The response echoes the request's ``id``; an unknown op is ``unsupported``; an exception of
    ``known_errors`` becomes ``ok: false`` with its message (prefixed by its type unless it is
    ``own_error``), any other is logged to stderr as a bug and reported the same way. A successful
    response carries ``elapsed_us`` and ``cpu_us`` (docs/interop.md): the handler's wall-clock and
    CPU time (the whole process, all its threads) less ``excluded()`` = (wall, CPU) seconds of bookkeeping the driver
    leaves out, read after the handler returns.
    """
    try:
        req = json.loads(line)
    except ValueError as exc:
        return {"ok": False, "error": f"bad JSON: {exc}"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    echo = {"id": req["id"]} if "id" in req else {}
    op = req.get("op")
    handler = ops.get(op) if isinstance(op, str) else None
    if handler is None:
        return {**echo, "ok": False, "error": f"unsupported op {json.dumps(op)}"}
    started, started_cpu = time.perf_counter(), time.process_time()
    try:
        out = {**echo, "ok": True, **handler(req)}
    except known_errors as exc:
        kind = "" if isinstance(exc, own_error) else f"{type(exc).__name__}: "
        return {**echo, "ok": False, "error": f"{kind}{exc}"}
    except Exception as exc:  # a bug: report it, keep serving
        print(f"{who}: {op} failed:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        return {**echo, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    less_wall, less_cpu = excluded()
    out["elapsed_us"] = round((wall - less_wall) * 1e6)
    out["cpu_us"] = round((cpu - less_cpu) * 1e6)
    return out


def serve(handle: Callable[[str], Json], stdin: TextIO, stdout: TextIO) -> None:
    """Answer every non-blank line of ``stdin`` with one JSON line on ``stdout``, in order."""
    for line in stdin:
        if not line.strip():
            continue
        stdout.write(json.dumps(handle(line)) + "\n")
        stdout.flush()


def _bare_external_pub(crypto: CryptoProvider, group: Group, message: bytes) -> bytes:
    """The GroupInfo MLSMessage with external_pub as a bare key, re-signed (see the module docstring)."""
    info = decode_exact(MLSMessage, message).body
    assert isinstance(info, GroupInfo)
    exts = tuple(
        Extension(e.extension_type, e.parse(ExternalPub).external_pub) if e.extension_type == ExternalPub.EXTENSION_TYPE else e
        for e in info.extensions
    )
    unsigned = GroupInfo(info.group_context, exts, info.confirmation_tag, info.signer)
    return message[:4] + encode(sign_group_info(crypto, unsigned, group.signer.private_key))


def main(stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Serve requests from ``stdin`` until it closes. The I/O shell around the sans-IO
    driver: it reads the host's wall clock for the driver, as it reads stdin."""
    serve(Driver(time.time).handle, stdin or sys.stdin, stdout or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
