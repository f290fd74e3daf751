"""passive-client-*.json: join from a Welcome, then follow the group's commits.

Every file in the passive-client format (passive-client-welcome,
passive-client-handling-commit, passive-client-random) runs here: the client
joins with the given KeyPackage and private keys (ratchet tree in the Welcome
or given out of band, external PSKs provided), checks the epoch
authenticator, then for each epoch processes the proposals delivered
separately and the commit, and checks the new epoch authenticator. The
group's state is also restored from its records after every epoch, and the
restored copy must behave the same (it processes the next epoch instead).
"""

from __future__ import annotations

from typing import Any

from ping_core.mls.tls import decode_exact
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.group import CLOCK_SKEW_S, Clock, CommitApplied, Group, KeyPackageBundle, Signer
from ping_core.mls.structs import KeyPackage, MLSMessage

from ping_core.testing.vectors.registry import VectorMismatch, expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    raw_kp = h(case["key_package"])
    kp = decode_exact(MLSMessage, raw_kp).body
    if not isinstance(kp, KeyPackage):
        raise VectorMismatch("key_package is not a KeyPackage")
    bundle = KeyPackageBundle(crypto, kp, h(case["init_priv"]), h(case["encryption_priv"]), key_package_bytes=raw_kp[4:])
    expect_equal("init key", crypto.dh_public(bundle.init_private), kp.init_key)
    expect_equal("encryption key", crypto.dh_public(bundle.encryption_private), kp.leaf_node.encryption_key)
    signer = Signer.from_private_key(crypto, kp.leaf_node.credential, h(case["signature_priv"]))
    expect_equal("signature key", signer.public_key, kp.leaf_node.signature_key)
    psks = {h(p["psk_id"]): h(p["psk"]) for p in case["external_psks"]}
    tree = case.get("ratchet_tree")
    # The members' KeyPackage leaves in these vectors carry one-year lifetimes that ended in
    # March 2025; the lifetime check on join is a §7.3 recommendation these vectors do not test.
    # The group's clock is the vector's own time (an hour after our KeyPackage's not_before,
    # inside the lifetimes of the KeyPackages made with it), so the run does not depend on the date.
    clock = _vector_clock(kp)
    group = Group.join(
        crypto, h(case["welcome"]), bundle, signer, ratchet_tree=h(tree) if tree else None, psks=psks,
        clock=clock, check_lifetimes=False,
    )  # fmt: skip
    expect_equal("initial epoch_authenticator", group.epoch_authenticator, h(case["initial_epoch_authenticator"]))
    for n, epoch in enumerate(case["epochs"]):
        for proposal in epoch["proposals"]:
            group.process_message(h(proposal), psks=psks)
        result = group.process_message(h(epoch["commit"]), psks=psks)
        if not isinstance(result, CommitApplied):
            raise VectorMismatch(f"epoch {n}: the commit gave {type(result).__name__}")
        expect_equal(f"epoch {n} epoch_authenticator", group.epoch_authenticator, h(epoch["epoch_authenticator"]))
        # A restored copy carries on from here.
        group = Group.from_bytes(crypto, group.to_bytes(), clock=clock)


def _vector_clock(kp: KeyPackage) -> Clock:
    """A fixed clock at the time the vector was made: its KeyPackage's ``not_before`` plus
    the backdating Ping applies (``CLOCK_SKEW_S``), or the Unix epoch without a lifetime."""
    lifetime = kp.leaf_node.lifetime
    at = float(0 if lifetime is None else lifetime.not_before + CLOCK_SKEW_S)
    return lambda: at
