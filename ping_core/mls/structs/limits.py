"""Per-field length bounds the struct decoders enforce (in bytes).

RFC 9420 gives most fields the unbounded ``<V>`` length; a strict decoder still
refuses absurd sizes so hostile input cannot make us hold large buffers per
field. Each bound is generous for every registered cipher suite (and for the
post-quantum ones in draft), so honest peers never hit it; the Reader's global
``max_vector`` (64 MiB by default) still caps every other vector.

=====================  ======  ==============================================
bound                  bytes   applies to
=====================  ======  ==============================================
MAX_HASH               255     hash and MAC outputs: tree_hash, transcript
                               hashes, parent_hash, confirmation/membership
                               tags, KeyPackageRef/ProposalRef, psk_nonce,
                               joiner_secret, path_secret (64 B for SHA-512)
MAX_GROUP_ID           1024    group_id, psk_group_id
MAX_HPKE_PUBLIC_KEY    4096    HPKE public keys (X25519: 32, ML-KEM-1024
                               hybrids: < 1700)
MAX_SIGNATURE_KEY      4096    signature public keys (Ed25519: 32, ML-DSA-87:
                               2592)
MAX_SIGNATURE          8192    signatures (Ed25519: 64, ML-DSA-87: 4627)
MAX_KEM_OUTPUT         4096    HPKE kem_output / enc
MAX_IDENTITY           65536   basic credential identity
MAX_CERTIFICATE        65536   one X.509 certificate (DER)
MAX_CERT_CHAIN         1 MiB   the whole certificates<V> vector
MAX_CAPABILITY_LIST    2048    each uint16 list in Capabilities /
                               RequiredCapabilities (1024 entries)
MAX_PSK_ID             65536   external psk_id
MAX_SENDER_DATA        255     encrypted_sender_data (suite 1: 28)
=====================  ======  ==============================================
"""

from __future__ import annotations

__all__ = [
    "MAX_HASH",
    "MAX_GROUP_ID",
    "MAX_HPKE_PUBLIC_KEY",
    "MAX_SIGNATURE_KEY",
    "MAX_SIGNATURE",
    "MAX_KEM_OUTPUT",
    "MAX_IDENTITY",
    "MAX_CERTIFICATE",
    "MAX_CERT_CHAIN",
    "MAX_CAPABILITY_LIST",
    "MAX_PSK_ID",
    "MAX_SENDER_DATA",
]

MAX_HASH = 255
MAX_GROUP_ID = 1024
MAX_HPKE_PUBLIC_KEY = 4096
MAX_SIGNATURE_KEY = 4096
MAX_SIGNATURE = 8192
MAX_KEM_OUTPUT = 4096
MAX_IDENTITY = 65536
MAX_CERTIFICATE = 65536
MAX_CERT_CHAIN = 1 << 20
MAX_CAPABILITY_LIST = 2048
MAX_PSK_ID = 65536
MAX_SENDER_DATA = 255
