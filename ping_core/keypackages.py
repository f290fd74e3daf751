"""This device's KeyPackages (RFC 9420 §10): their private keys in the MLS state store, and the
checks on a KeyPackage claimed for another device.

Records (see docs/formats.md)::

    kp/<KeyPackageRef hex>    a one-time KeyPackage bundle (deleted by the join that uses it)
    kpl/<KeyPackageRef hex>   a last-resort bundle (kept for reuse)
    kpo/<KeyPackageRef hex>   a bundle retired for an outdated credential (usable once more)

A KeyPackage's private keys are checkpointed BEFORE its bytes are returned, so a published
KeyPackage always has its keys on disk.
"""

from __future__ import annotations

import logging
from typing import Iterable

from ping_core.checks import check_bytes
from ping_core.clientstate import ClientState
from ping_core.conversation import MAX_LEAF_LIFETIME_S, StoreUndo
from ping_core.conversation_name import PING_CAPABILITIES
from ping_core.errors import IdentityError, InvalidInput, PingError
from ping_core.ids import DeviceId, UserId
from ping_core.mls.group import KeyPackageBundle, generate_key_package, validate_key_package
from ping_core.mls.structs import KeyPackage
from ping_core.wallclock import wall_now_s

__all__ = ["KeyPackages", "KP_PREFIX", "KPL_PREFIX", "KPO_PREFIX"]

log = logging.getLogger("ping_core.client")

KP_PREFIX = "kp/"  # one-time KeyPackage bundles (deleted once used)
KPL_PREFIX = "kpl/"  # last-resort KeyPackage bundles (kept)
KPO_PREFIX = "kpo/"  # retired bundles with an outdated credential (usable once more, deleted once used)


class KeyPackages:
    """The KeyPackages of one client."""

    def __init__(self, state: ClientState) -> None:
        self.st = state

    async def fresh(self, *, last_resort: bool) -> bytes:
        """A new KeyPackage (MLSMessage bytes), its bundle durable before it is returned."""
        st = self.st
        bundle = generate_key_package(st.crypto, st.signer, now=wall_now_s(), capabilities=PING_CAPABILITIES)
        key = (KPL_PREFIX if last_resort else KP_PREFIX) + bundle.ref.hex()
        undo = StoreUndo(st.store)
        undo.put(key, bundle.to_bytes())
        await st.checkpoint(undo)
        return bundle.message()

    async def retire_outdated(self) -> int:
        """Move the bundles whose leaf carries another credential than this client's to ``kpo/``."""
        st = self.st
        undo = StoreUndo(st.store)
        retired = 0
        for prefix in (KP_PREFIX, KPL_PREFIX):
            for key, raw in st.store.items(prefix):
                try:
                    bundle = KeyPackageBundle.from_bytes(st.crypto, raw)
                except PingError:
                    continue
                if bundle.key_package.leaf_node.credential != st.signer.credential:
                    undo.delete(key)
                    undo.put(KPO_PREFIX + key[len(prefix) :], raw)
                    retired += 1
        if retired:
            await st.checkpoint(undo)
        return retired

    def bundles_for(self, refs: Iterable[bytes]) -> dict[bytes, tuple[str, KeyPackageBundle]]:
        """The stored bundles (record key, bundle) of the KeyPackageRefs ``refs``; a corrupt one is skipped."""
        out: dict[bytes, tuple[str, KeyPackageBundle]] = {}
        for ref in refs:
            for prefix in (KP_PREFIX, KPL_PREFIX, KPO_PREFIX):
                key = prefix + ref.hex()
                raw = self.st.store.get(key)
                if raw is not None:
                    try:
                        out[ref] = (key, KeyPackageBundle.from_bytes(self.st.crypto, raw))
                    except PingError:
                        log.warning("stored KeyPackage %s is corrupt; ignored", ref.hex()[:16])
                    break
        return out

    def verified(self, raw: object, device: DeviceId, user: UserId | None) -> KeyPackage:
        """A claimed KeyPackage, validated (RFC 9420 §10.1), of ``device`` (``InvalidInput``), its
        leaf bound to an account (``IdentityError``), that account ``user`` when given."""
        st = self.st
        kp = validate_key_package(
            st.crypto,
            check_bytes(raw, "KeyPackage"),
            now=wall_now_s(),
            max_lifetime_s=MAX_LEAF_LIFETIME_S,
            leaf_check=st.verifier.check_leaf,
        )
        if DeviceId.from_public_key(kp.leaf_node.signature_key) != device:
            raise InvalidInput("the DeviceId is not the KeyPackage's device (SHA-256 of its leaf signature key)")
        if user is not None and st.verifier.user_of(kp.leaf_node) != user:
            raise IdentityError("the KeyPackage belongs to another account than the one asked for")
        return kp

    def entries(self, entries: object, for_user: UserId | None = None) -> list[KeyPackage]:
        """``add_members``'s entries checked: a non-empty list of distinct ``(DeviceId, KeyPackage bytes)``."""
        if for_user is not None and not isinstance(for_user, UserId):
            raise InvalidInput("for_user must be a UserId")
        if not isinstance(entries, (list, tuple)) or not entries:
            raise InvalidInput("entries must be a non-empty list of (DeviceId, KeyPackage bytes)")
        kps, devices = [], []
        for entry in entries:
            if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                raise InvalidInput("each entry is (DeviceId, KeyPackage bytes)")
            dev, raw = entry
            if not isinstance(dev, DeviceId):
                raise InvalidInput("each entry's device must be a DeviceId")
            kp = self.verified(raw, dev, for_user)
            if dev in devices:
                raise InvalidInput("a device appears twice")
            kps.append(kp)
            devices.append(dev)
        return kps

    def is_one_time(self, key: str) -> bool:
        """Whether the bundle at record ``key`` is deleted once a join used it (all but last-resort)."""
        return not key.startswith(KPL_PREFIX)
