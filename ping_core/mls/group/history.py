"""A history view: read-only decryption of some epochs' application messages.

:meth:`Group.export_history_view` hands out what a member keeps of an epoch
for late application messages (the engine's past-epoch state: sender-data
secret, secret tree, the roster's signature keys) for the current epoch and
every retained past epoch, as an independent copy. It holds no leaf key, no
path secret, no init/exporter/membership secret: nothing that signs, nothing
that processes a handshake message, nothing that derives another epoch. So a
holder (e.g. a newly linked device of the same account) can read those
epochs' messages, and only those.

Records (the same names as the group's own records of those epochs, so a
view can be cut out of a group's records):

    past:<e>          the epoch's framing secrets and roster signature keys
    st:<e>:<name>     the epoch's secret tree (one message changes one small record)
"""

from __future__ import annotations

from typing import Mapping

from ping_core.errors import MlsError, MlsReason, stored_state
from ping_core.mls.tls import decode_exact
from ping_core.mls.crypto import CryptoProvider
from ping_core.mls.tree.secret_tree import RecordChanges
from ping_core.mls.structs import ContentType, MLSMessage, PrivateMessage

from .application import open_application
from .results import ApplicationMessage, SenderCheck
from .epoch import EpochState, PastEpoch, secret_tree_records, split_prefixed

__all__ = ["HistoryView"]

_MAX_EPOCHS = 1 << 16


class HistoryView:
    """Application-message decryption for a set of epochs of one group, without membership.

    Build one with :meth:`Group.export_history_view` or :meth:`from_records`.
    Not thread-safe (one writer, as a :class:`Group`). A failed call changes
    nothing.
    """

    __slots__ = ("crypto", "_epochs", "_deleted")

    def __init__(self, crypto: CryptoProvider, epochs: Mapping[int, PastEpoch]) -> None:
        """Internal: use :meth:`from_records` or :meth:`Group.export_history_view`."""
        if not epochs:
            raise MlsError("a history view holds at least one epoch", reason=MlsReason.INVALID_ARGUMENT)
        if len({p.framing.group_id for p in epochs.values()}) != 1:
            raise MlsError("a history view's epochs belong to different groups", reason=MlsReason.INVALID_ARGUMENT)
        self.crypto = crypto
        self._epochs = dict(sorted(epochs.items()))
        self._deleted: set[str] = set()

    def __repr__(self) -> str:
        return f"HistoryView(group_id={self.group_id.hex()}, epochs={list(self._epochs)})"

    @classmethod
    @stored_state
    def from_records(cls, crypto: CryptoProvider, records: Mapping[str, bytes]) -> HistoryView:
        """A view from its records (as :meth:`records` gave them). ``MlsError`` for a
        malformed set: a name that is neither ``past:<e>`` nor ``st:<e>:...`` of a
        listed epoch, a malformed record, no epoch, epochs of different groups."""
        epochs: dict[int, PastEpoch] = {}
        names = set(records)
        for name in sorted(n for n in records if n.startswith("past:")):
            digits = name[5:]
            if not digits.isdigit() or not digits.isascii() or name != f"past:{int(digits)}":
                raise MlsError(f"malformed history record name {name!r}", reason=MlsReason.CORRUPT_STATE)
            epoch = int(digits)
            if len(epochs) >= _MAX_EPOCHS:
                raise MlsError("too many epochs in a history view", reason=MlsReason.CORRUPT_STATE)
            prefix = f"st:{epoch}:"
            tree_records = split_prefixed(records, prefix)
            epochs[epoch] = PastEpoch.decode(crypto, records[name], tree_records)
            if epochs[epoch].epoch != epoch:
                raise MlsError(
                    f"history record {name!r} holds epoch {epochs[epoch].epoch}",
                    reason=MlsReason.CORRUPT_STATE,
                )
            names.discard(name)
            names.difference_update(prefix + n for n in tree_records)
        if names:
            raise MlsError(f"unexpected history record {sorted(names)[0]!r}", reason=MlsReason.CORRUPT_STATE)
        return cls(crypto, epochs)

    # -- what it holds ---------------------------------------------------------

    @property
    def group_id(self) -> bytes:
        return next(iter(self._epochs.values())).framing.group_id

    @property
    def epochs(self) -> tuple[int, ...]:
        """The epochs whose application messages this view decrypts, ascending."""
        return tuple(self._epochs)

    def __contains__(self, epoch: object) -> bool:
        return epoch in self._epochs

    def signature_key(self, leaf_index: int, epoch: int) -> bytes | None:
        """The signature key of the member at ``leaf_index`` in ``epoch`` (``None``: blank or unknown)."""
        past = self._epochs.get(epoch)
        return None if past is None else past.signature_keys.get(leaf_index)

    # -- reading -----------------------------------------------------------------

    def decrypt(self, data: bytes, *, check_sender: SenderCheck | None = None) -> ApplicationMessage:
        """Decrypt an application message (MLSMessage bytes) of one of :attr:`epochs`.

        ``check_sender`` runs once the sender is authenticated and before
        anything changes, as in :meth:`Group.process_message`; on any failure
        ``MlsError`` (or the hook's exception) and the view is unchanged. A
        message's ratchet generation is consumed, so it decrypts once.
        """
        if not isinstance(data, bytes):
            raise MlsError("a message must be bytes", reason=MlsReason.INVALID_ARGUMENT)
        body = decode_exact(MLSMessage, data).body
        if not isinstance(body, PrivateMessage) or body.content_type != ContentType.APPLICATION:
            raise MlsError("a history view reads application PrivateMessages only", reason=MlsReason.MALFORMED)
        past = self._epochs.get(body.epoch)
        if past is None:
            raise MlsError(f"the history view holds no epoch {body.epoch}", reason=MlsReason.WRONG_EPOCH)
        if body.group_id != past.framing.group_id:
            raise MlsError("the message is for another group", reason=MlsReason.WRONG_GROUP)
        return open_application(self.crypto, past.framing, past.signature_keys.get, body, check_sender)

    # -- changing and persisting --------------------------------------------------

    def forget_before(self, epoch: int) -> None:
        """Erase every epoch older than ``epoch`` (shows in :meth:`changed_records`).
        ``MlsError`` and no change when that would erase them all: drop the view instead."""
        old = [e for e in self._epochs if e < epoch]
        if len(old) == len(self._epochs):
            raise MlsError("forgetting every epoch: drop the view instead", reason=MlsReason.WRONG_STATE)
        for e in old:
            past = self._epochs.pop(e)
            self._deleted.add(f"past:{e}")
            tree = past.framing.secret_tree
            self._deleted.update(f"st:{e}:{n}" for n in tree.records())
            self._deleted.update(f"st:{e}:{n}" for n in tree.changes().deleted)

    def records(self) -> dict[str, bytes]:
        """Every record of the view (see the module docstring)."""
        out: dict[str, bytes] = {}
        for epoch, past in self._epochs.items():
            out[f"past:{epoch}"] = past.encode_meta()
            out.update(secret_tree_records(f"st:{epoch}:", past.framing.secret_tree))
        return out

    def changed_records(self) -> RecordChanges:
        """Records written and deleted since the last :meth:`mark_saved` (a decrypted
        message changes one small secret-tree record)."""
        written: dict[str, bytes] = {}
        deleted = set(self._deleted)
        for epoch, past in self._epochs.items():
            ch = past.framing.secret_tree.changes()
            written.update((f"st:{epoch}:{n}", v) for n, v in ch.written.items())
            deleted.update(f"st:{epoch}:{n}" for n in ch.deleted)
        deleted.difference_update(written)
        return RecordChanges(written, frozenset(deleted))

    def mark_saved(self) -> None:
        """The caller persisted :meth:`changed_records`."""
        self._deleted.clear()
        for past in self._epochs.values():
            past.framing.secret_tree.mark_saved()


def view_of_epochs(crypto: CryptoProvider, current: EpochState, past: Mapping[int, PastEpoch]) -> HistoryView:
    """SECRET: a :class:`HistoryView` copying a group's ``current`` epoch and its retained
    ``past`` ones (see :meth:`Group.export_history_view`). Through the records'
    encoding: the view shares no mutable secret tree with the group."""
    records = {f"past:{current.epoch}": PastEpoch.of(current).encode_meta()}
    records.update(secret_tree_records(f"st:{current.epoch}:", current.framing.secret_tree))
    for epoch, old in past.items():
        records[f"past:{epoch}"] = old.encode_meta()
        records.update(secret_tree_records(f"st:{epoch}:", old.framing.secret_tree))
    return HistoryView.from_records(crypto, records)
