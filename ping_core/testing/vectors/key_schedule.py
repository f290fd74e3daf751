"""key-schedule.json: a chain of epochs through the key schedule (RFC 9420 §8).

Reading note (tests/vectors/SOURCE.md): ``exporter.label`` is used as the
ASCII bytes of the hex string as written; ``exporter.context`` is hex-decoded.
"""

from __future__ import annotations

from typing import Any

from ping_core.mls.schedule import key_schedule as schedule
from ping_core.mls.tls import encode
from ping_core.mls.structs.group_info import GroupContext
from ping_core.mls.crypto import CryptoProvider

from ping_core.testing.vectors.registry import expect_equal

__all__ = ["run"]


def run(case: dict[str, Any], crypto: CryptoProvider) -> None:
    h = bytes.fromhex
    init_secret = h(case["initial_init_secret"])
    for n, e in enumerate(case["epochs"]):
        where = f"epoch {n}"
        context = GroupContext(
            cipher_suite=case["cipher_suite"],
            group_id=h(case["group_id"]),
            epoch=n,
            tree_hash=h(e["tree_hash"]),
            confirmed_transcript_hash=h(e["confirmed_transcript_hash"]),
        )
        group_context = encode(context)
        expect_equal(f"{where} group_context", group_context, h(e["group_context"]))
        s = schedule.epoch_secrets(crypto, init_secret, h(e["commit_secret"]), h(e["psk_secret"]), group_context)
        expect_equal(f"{where} joiner_secret", s.joiner_secret, h(e["joiner_secret"]))
        assert s.welcome is not None
        expect_equal(f"{where} welcome_secret", s.welcome.welcome_secret, h(e["welcome_secret"]))
        for name in (
            "sender_data_secret",
            "encryption_secret",
            "exporter_secret",
            "epoch_authenticator",
            "external_secret",
            "confirmation_key",
            "membership_key",
            "resumption_psk",
            "init_secret",
        ):
            expect_equal(f"{where} {name}", getattr(s, name), h(e[name]))
        _, external_pub = schedule.external_key_pair(crypto, s.external_secret)
        expect_equal(f"{where} external_pub", external_pub, h(e["external_pub"]))
        x = e["exporter"]
        got = schedule.mls_exporter(crypto, s.exporter_secret, x["label"].encode(), h(x["context"]), x["length"])
        expect_equal(f"{where} exporter", got, h(x["secret"]))
        # Secrets restored from their compact encoding are the same.
        expect_equal(f"{where} persisted", schedule.EpochSecrets.decode(s.encode()).encode(), s.encode())
        init_secret = s.init_secret
