"""Leaf nodes (RFC 9420 §7.2): Capabilities, Lifetime, LeafNode and LeafNodeTBS."""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .credential import Credential
from .enums import LEAF_NODE_SOURCE_BY_VALUE, CipherSuite, CredentialType, LeafNodeSource, ProtocolVersion
from .extensions import Extension, read_extensions
from .limits import MAX_CAPABILITY_LIST, MAX_HASH, MAX_HPKE_PUBLIC_KEY, MAX_SIGNATURE, MAX_SIGNATURE_KEY

__all__ = ["Capabilities", "Lifetime", "LeafNode"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a client supports (§7.2). Every list is of uint16 values; unknown
    values (including GREASE, §13.5) are legal and carried as ``int``.

    The defaults describe a Ping client: MLS 1.0, cipher suite 1, no
    non-default extensions or proposals, basic credentials.
    """

    versions: tuple[int, ...] = (ProtocolVersion.MLS10,)
    cipher_suites: tuple[int, ...] = (CipherSuite.MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,)
    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = (CredentialType.BASIC,)

    def write(self, w: Writer) -> None:
        w.uint16s(self.versions)
        w.uint16s(self.cipher_suites)
        w.uint16s(self.extensions)
        w.uint16s(self.proposals)
        w.uint16s(self.credentials)

    @classmethod
    def read(cls, r: Reader) -> Capabilities:
        # The members of a group mostly advertise the same capabilities: a decoding is kept
        # per encoding (short lists only, one-byte lengths), and reused when the same bytes come
        # again. A Capabilities is immutable, and those bytes decoded without error before
        # under the same bounds, so the result is the one decoding them again would give.
        data, pos, end = r.data, r.pos, r.end
        stop = pos
        for _ in range(5):
            if stop >= end or data[stop] >= min(0x40, r.max_vector + 1):
                break
            stop += 1 + data[stop]
        else:
            if stop <= end:
                raw = data[pos:stop]
                known = _CAPABILITIES_SEEN.get(raw)
                if known is not None:
                    r.pos = stop
                    return known
                caps = cls._read(r)
                if len(_CAPABILITIES_SEEN) >= 256:
                    _CAPABILITIES_SEEN.clear()
                _CAPABILITIES_SEEN[raw] = caps
                return caps
        return cls._read(r)

    @classmethod
    def _read(cls, r: Reader) -> Capabilities:
        u = r.uint16s
        m = MAX_CAPABILITY_LIST
        return cls(u(m), u(m), u(m), u(m), u(m))


#: Capabilities by encoding (see Capabilities.read); bounded, public data only.
_CAPABILITIES_SEEN: dict[bytes, Capabilities] = {}
_U64_PAIR = Struct(">QQ")
_KEY_PACKAGE, _UPDATE, _COMMIT = LeafNodeSource.KEY_PACKAGE, LeafNodeSource.UPDATE, LeafNodeSource.COMMIT
_BASIC = CredentialType.BASIC


@dataclass(frozen=True, slots=True)
class Lifetime:
    """``struct { uint64 not_before; uint64 not_after; }`` in seconds since the epoch."""

    not_before: int
    not_after: int

    def write(self, w: Writer) -> None:
        w.u64(self.not_before)
        w.u64(self.not_after)

    @classmethod
    def read(cls, r: Reader) -> Lifetime:
        not_before, not_after = r.u64_pair()
        return cls(not_before, not_after)


@dataclass(frozen=True, slots=True)
class LeafNode:
    """A member's leaf (§7.2).

    ``lifetime`` is present exactly when ``leaf_node_source`` is
    ``key_package`` and ``parent_hash`` exactly when it is ``commit``; the
    encoder refuses any other combination, the decoder never produces one.
    ``signature`` is over :meth:`tbs` with label ``"LeafNodeTBS"``.
    """

    encryption_key: bytes
    signature_key: bytes
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: LeafNodeSource
    lifetime: Lifetime | None = None
    parent_hash: bytes | None = None
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""

    def _write_content(self, w: Writer) -> None:
        w.opaque(self.encryption_key)
        w.opaque(self.signature_key)
        self.credential.write(w)
        self.capabilities.write(w)
        source = self.leaf_node_source
        w.u8(source)
        if source == LeafNodeSource.KEY_PACKAGE:
            if self.lifetime is None or self.parent_hash is not None:
                raise ValueError("a key_package leaf node has a lifetime and no parent_hash")
            self.lifetime.write(w)
        elif source == LeafNodeSource.UPDATE:
            if self.lifetime is not None or self.parent_hash is not None:
                raise ValueError("an update leaf node has no lifetime and no parent_hash")
        elif source == LeafNodeSource.COMMIT:
            if self.parent_hash is None or self.lifetime is not None:
                raise ValueError("a commit leaf node has a parent_hash and no lifetime")
            w.opaque(self.parent_hash)
        else:
            raise ValueError(f"cannot encode leaf node source {source}")
        w.structs(self.extensions)

    def write(self, w: Writer) -> None:
        self._write_content(w)
        w.opaque(self.signature)

    def tbs(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """The LeafNodeTBS encoding this leaf's signature covers.

        For ``update`` and ``commit`` sources ``group_id`` and ``leaf_index``
        are required (they bind the leaf to its place); for ``key_package``
        they must be omitted.
        """
        w = Writer()
        self._write_content(w)
        if self.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            if group_id is not None or leaf_index is not None:
                raise ValueError("a key_package leaf node is not bound to a group")
        else:
            if group_id is None or leaf_index is None:
                raise ValueError("update and commit leaf nodes need group_id and leaf_index")
            w.opaque(group_id)
            w.u32(leaf_index)
        return bytes(w.buf)

    @classmethod
    def read(cls, r: Reader) -> LeafNode:
        start = r.pos
        leaf = _read_plain(r)
        if leaf is not None:
            return leaf
        r.pos = start
        return cls._read(r)

    @classmethod
    def _read(cls, r: Reader) -> LeafNode:
        """The generic decoder (every field through the Reader)."""
        # Hot when decoding a large ratchet tree: bound methods held locally.
        opaque = r.opaque
        encryption_key = opaque(MAX_HPKE_PUBLIC_KEY)
        signature_key = opaque(MAX_SIGNATURE_KEY)
        credential = Credential.read(r)
        capabilities = Capabilities.read(r)
        raw_source = r.u8()
        source = LEAF_NODE_SOURCE_BY_VALUE.get(raw_source)
        lifetime: Lifetime | None = None
        parent_hash: bytes | None = None
        if source is LeafNodeSource.KEY_PACKAGE:
            not_before, not_after = r.u64_pair()
            lifetime = Lifetime(not_before, not_after)
        elif source is LeafNodeSource.COMMIT:
            parent_hash = opaque(MAX_HASH)
        elif source is None:
            raise MlsDecodeError(f"unknown leaf node source {raw_source}", reason=MlsReason.MALFORMED)
        extensions = read_extensions(r)
        signature = opaque(MAX_SIGNATURE)
        return cls(
            encryption_key,
            signature_key,
            credential,
            capabilities,
            source,
            lifetime,
            parent_hash,
            extensions,
            signature,
        )


def _read_plain(r: Reader) -> LeafNode | None:
    """A LeafNode of the usual shape read by slicing, or None (the caller then reads it with
    :meth:`LeafNode._read` from the same position).

    The usual shape, every leaf of a large tree: keys, identity and parent hash with one-byte
    lengths, a basic credential, no extensions, a signature with a one- or two-byte length. The
    values are those the generic decoder gives; any other shape, or bytes that do not fit the
    input, go to the generic decoder, which raises what it raises. (Capabilities are read by
    :meth:`Capabilities.read`, which is what the generic decoder calls there too.)
    """
    data, p, end = r.data, r.pos, r.end
    short = min(0x3F, r.max_vector)  # a one-byte length within every bound of these fields
    got = _short_opaque(data, p, end, short)
    if got is None:
        return None
    encryption_key, p = got
    got = _short_opaque(data, p, end, short)
    if got is None:
        return None
    signature_key, p = got
    if p + 2 > end or data[p] != 0 or data[p + 1] != 1:  # credential_type basic (uint16 1)
        return None
    got = _short_opaque(data, p + 2, end, short)
    if got is None:
        return None
    identity, r.pos = got
    capabilities = Capabilities.read(r)
    p = r.pos
    if p >= end:
        return None
    raw_source = data[p]
    p += 1
    lifetime: Lifetime | None = None
    parent_hash: bytes | None = None
    if raw_source == 1:
        if p + 16 > end:
            return None
        not_before, not_after = _U64_PAIR.unpack_from(data, p)
        lifetime = Lifetime(not_before, not_after)
        p += 16
        source = _KEY_PACKAGE
    elif raw_source == 3:
        got = _short_opaque(data, p, end, short)
        if got is None:
            return None
        parent_hash, p = got
        source = _COMMIT
    elif raw_source == 2:
        source = _UPDATE
    else:
        return None
    if p + 2 > end or data[p] != 0:  # no extensions
        return None
    p += 1
    first = data[p]
    if first <= short:
        n, a = first, p + 1
    elif 0x40 <= first < 0x80 and p + 2 <= end:
        n, a = ((first & 0x3F) << 8) | data[p + 1], p + 2
        if n < 0x40 or n > MAX_SIGNATURE or n > r.max_vector:
            return None
    else:
        return None
    b = a + n
    if b > end:
        return None
    r.pos = b
    return LeafNode(
        encryption_key, signature_key, Credential(_BASIC, identity), capabilities, source, lifetime, parent_hash, (),
        data[a:b],
    )  # fmt: skip


def _short_opaque(data: bytes, p: int, end: int, short: int) -> tuple[bytes, int] | None:
    """``opaque<V>`` at ``p`` when its length takes one byte and is at most ``short``, with
    the position after it; None otherwise (or when it does not fit before ``end``)."""
    if p >= end:
        return None
    n = data[p]
    b = p + 1 + n
    if n > short or b > end:
        return None
    return data[p + 1 : b], b
