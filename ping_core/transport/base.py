"""The ``Transport`` protocol: everything the SDK asks of the delivery service.

A transport is bound to one device: the device it authenticates as (the HTTP
transport signs requests with the device key). It speaks to two services the
reference server ``ping_server`` offers together:

* **Conversation logs.** One append-only, ordered log per conversation. The
  server numbers envelopes 1, 2, 3, ... (``MessageEnvelope.seq``). It refuses
  a Commit whose ``epoch`` is not the conversation's current epoch (409
  ``epoch_advanced``) and advances the epoch on each accepted Commit, so
  exactly one Commit per epoch wins. Application and Proposal envelopes are
  appended whatever their epoch.
* **Directory.** Devices (registered with an account binding), each device's
  KeyPackage pool (one-time KeyPackages, claimed once, plus an optional
  last-resort KeyPackage that is never used up) and each device's Welcome
  inbox.

Membership: only a conversation's members may read its log or post to it
(403 ``forbidden``). The server cannot read MLS messages, so it learns
membership from routing, never from payloads:

* the device whose envelope (any kind) is the first for a conversation id
  creates the conversation and is its first member;
* a Welcome sent by a member makes its recipients members (a pending,
  not yet consented membership when the sender is a stranger to the
  recipient, see :class:`DeliveryLimits`; :meth:`Transport.leave_conversation`
  declines it);
* a Commit sent after :meth:`Transport.set_next_commit_removals` takes the
  declared devices out, atomically with the Commit's acceptance (nothing
  changes when the Commit is refused). A removed device may still read the log
  up to and including that Commit (so its client learns it was removed), and
  nothing after it (403 once its cursor is at the Commit); it may not post;
* a revoked device loses every membership (a revocation is the account key's signed
  :class:`~ping_core.identity.DeviceRevocation`, see :meth:`Transport.revoke_device_remote`);
* a *verified* conversation (its Commits bring GroupInfos, its handshake messages are MLS
  PublicMessages: :meth:`Transport.set_next_commit_group_info`, ``ping_core.transport.handshake``)
  is followed by the service: a Commit removing a leaf ends that device's membership, and
  Welcomes go only to the devices the latest Commit added;
* a user's DeviceGroup (id ``FF DC || SHA-256(user_id)[:14]``) has implicit
  membership: exactly that user's non-revoked devices. Nobody else may create,
  read, post to or be welcomed into it.

Reading a conversation nobody has posted to yet gives ``[]`` to anyone.

Welcome routing: a Welcome is not appended to a conversation log (only new
members can read it). The SDK first calls :meth:`Transport.set_next_welcome_recipients`
for the conversation, then :meth:`Transport.send` with the Welcome envelope;
the transport delivers it to those devices' inboxes and forgets the
recipients. A transport that routes Welcomes some other way may make
``set_next_welcome_recipients`` a no-op.

Errors: every method raises :class:`ping_core.errors.TransportError` when a
request fails. ``status`` is the HTTP status (``None`` when no answer came:
timeout, connection refused) and ``code`` the server's machine-readable code.
``TransportError.is_definite_rejection`` (4xx or a known code) is the ONLY
test of "the server did not apply it"; callers never parse message text.
Codes the server uses: ``invalid_request`` 400, ``unauthorized`` 401,
``device_revoked`` 403 (:data:`DEVICE_REVOKED`: the calling device is revoked, on every
method, registration included), ``forbidden`` 403 (e.g. a non-member), ``not_found`` 404,
``epoch_advanced`` 409, ``invalid_commit`` / ``invalid_proposal`` 400 (a verified
conversation's handshake message that does not verify, see
:meth:`Transport.set_next_commit_group_info`), ``conflict`` 409, ``inbox_full`` 409 (a Welcome
recipient's inbox holds ``MAX_INBOX_ENTRIES`` / ``MAX_INBOX_BYTES`` already),
``invite_limit`` 409 (too many unacknowledged Welcomes from accounts the
recipient has no relation with, see :class:`DeliveryLimits`), ``too_large`` 413,
``quota_exceeded`` 413 (a storage quota of the conversation or of the sender's
account), ``request_timeout`` 408 (the body did not arrive in time),
``rate_limited`` 429; and ``server_error`` 5xx, ``timeout`` / ``network``
without a status (ambiguous).

Order of checks (which error wins when several apply): argument validation
(400/413) first, then the caller (401 not registered, 403 ``device_revoked``), then the
method's own rules in the order its docstring lists them.

A revoked device's requests are refused with 403 ``device_revoked`` whatever they ask, and
only that code says so: a client that gets it knows its device was revoked (for good: a
revoked device id can never register again), not merely that one request was not allowed.

Arguments are validated by the caller's types; a transport may raise
``InvalidInput`` for a call it can tell is malformed before sending anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ping_core.device import DeviceInfo
from ping_core.errors import IdentityError, InvalidInput, TransportError
from ping_core.identity import DeviceBinding, DeviceRevocation
from ping_core.ids import ConversationId, DeviceId, UserId
from ping_core.message import MessageEnvelope
from ping_core.sync import SyncCursor

__all__ = [
    "RoutesNextCommit",
    "Transport",
    "KeyPackageSupply",
    "DeliveryLimits",
    "KeyPackageCount",
    "MAX_INBOX_ENTRIES",
    "MAX_INBOX_BYTES",
    "MAX_FETCH_LIMIT",
    "MAX_FETCH_WAIT_MS",
    "MAX_WATCH_CONVERSATIONS",
    "WatchResult",
    "MAX_KEY_PACKAGES_PER_PUBLISH",
    "MAX_KEY_PACKAGE_LEN",
    "MAX_DEVICE_LIST",
    "MAX_CLAIM_COUNT",
    "MAX_REVOCATION_LIST",
    "DEVICE_REVOKED",
    "MAX_EPOCH",
    "MAX_STRANGER_WELCOMES_PER_SENDER",
    "MAX_STRANGER_WELCOMES",
    "MAX_STRANGER_WELCOME_BYTES",
    "MAX_CONVERSATION_BYTES",
    "MAX_CONVERSATION_ENVELOPES",
    "MAX_ACCOUNT_BYTES",
    "KEY_PACKAGE_CLAIM_WINDOW_MS",
    "MAX_KEY_PACKAGE_CLAIMS_PER_CLAIMER",
    "MAX_KEY_PACKAGE_CLAIMS_PER_DEVICE",
    "within",
    "ERROR_CODES",
    "INVALID_COMMIT",
    "INVALID_PROPOSAL",
    "unique_devices",
    "revocation_refusal",
    "PendingRouting",
]

# Upper bound on ``fetch_since(limit=...)``; the SDK pages by 256.
MAX_FETCH_LIMIT = 1000
# Upper bound on ``fetch_since(wait_ms=...)`` (long polling).
MAX_FETCH_WAIT_MS = 30_000
# Upper bound on the conversations one ``watch`` call names (413 ``too_large`` beyond).
MAX_WATCH_CONVERSATIONS = 1000
# Upper bound on one ``publish_key_packages`` batch, and on one KeyPackage's size.
MAX_KEY_PACKAGES_PER_PUBLISH = 200
MAX_KEY_PACKAGE_LEN = 64 * 1024
# Upper bound on the devices named by one ``set_next_welcome_recipients`` or
# ``set_next_commit_removals`` (413 ``too_large`` beyond).
MAX_DEVICE_LIST = 1000
# ``claim_device_key_packages(count=...)`` is 1..MAX_CLAIM_COUNT.
MAX_CLAIM_COUNT = 100
# ``list_revocations`` returns at most this many revocations (the newest).
MAX_REVOCATION_LIST = 1000
# What one device's Welcome inbox holds at most (unacknowledged entries, and their bytes);
# a Welcome that would overflow a recipient's inbox is refused with 409 ``inbox_full``.
MAX_INBOX_ENTRIES = 1000
MAX_INBOX_BYTES = 64 * 1024 * 1024
# Welcomes from accounts the recipient has no relation with (see DeliveryLimits): at most this
# many unacknowledged ones per (sender account, recipient device), per recipient device from all
# such senders together, and their bytes per recipient device (409 ``invite_limit`` beyond).
MAX_STRANGER_WELCOMES_PER_SENDER = 10
MAX_STRANGER_WELCOMES = 100
MAX_STRANGER_WELCOME_BYTES = 16 * 1024 * 1024
# Storage quotas (413 ``quota_exceeded`` beyond): one conversation's log, and what one account stores.
MAX_CONVERSATION_BYTES = 4 * 1024 * 1024 * 1024
MAX_CONVERSATION_ENVELOPES = 10_000_000
MAX_ACCOUNT_BYTES = 4 * 1024 * 1024 * 1024
# One-time KeyPackage claims per window: of one device by one claiming account, and of one device
# by all other accounts together. Beyond, claims get the device's last-resort KeyPackage.
KEY_PACKAGE_CLAIM_WINDOW_MS = 60 * 60 * 1000
MAX_KEY_PACKAGE_CLAIMS_PER_CLAIMER = 4
MAX_KEY_PACKAGE_CLAIMS_PER_DEVICE = 16
# The largest epoch a Commit may carry: the next epoch must fit a signed 64-bit column.
MAX_EPOCH = (1 << 63) - 2
# A Commit / Proposal a verified conversation refuses (400; ``ping_core.transport.handshake``).
INVALID_COMMIT = "invalid_commit"
INVALID_PROPOSAL = "invalid_proposal"
# The code of every refusal of a revoked device's request (403), distinct from other ``forbidden``s.
DEVICE_REVOKED = "device_revoked"
# The codes a delivery service puts in ``TransportError.code`` (see module docstring).
ERROR_CODES = frozenset(
    {
        "invalid_request",
        "unauthorized",
        DEVICE_REVOKED,
        INVALID_COMMIT,
        INVALID_PROPOSAL,
        "forbidden",
        "not_found",
        "epoch_advanced",
        "conflict",
        "inbox_full",
        "invite_limit",
        "too_large",
        "quota_exceeded",
        "request_timeout",
        "rate_limited",
        "server_error",
        "timeout",
        "network",
    }
)


def unique_devices(device_ids: list[DeviceId], what: str) -> list[DeviceId]:
    """``device_ids`` without repeats (first occurrence kept). More than ``MAX_DEVICE_LIST``
    raises ``TransportError`` 413 ``too_large``, as the server answers."""
    if len(device_ids) > MAX_DEVICE_LIST:
        raise TransportError(f"more than {MAX_DEVICE_LIST} {what}", status=413, code="too_large")
    return list(dict.fromkeys(device_ids))


def revocation_refusal(revocation: DeviceRevocation, owner: UserId, owner_key: bytes) -> str | None:
    """Why a delivery service refuses (403 ``forbidden``) ``revocation`` as the statement revoking a
    device of account ``owner``, whose registered account key is ``owner_key``: it names another
    account or key, or its signature does not verify. None when it holds. Pure (one Ed25519
    verification); the memory service and ping_server share it."""
    if revocation.user_id != owner or revocation.user_public_key != owner_key:
        return "the revocation is not a statement of the device's account"
    try:
        revocation.verify()
    except IdentityError:
        return "the revocation's account signature does not verify"
    return None


class PendingRouting:
    """What a transport remembers between ``set_next_welcome_recipients`` /
    ``set_next_commit_removals`` and the send that uses it (the rules of those two methods)."""

    __slots__ = ("_welcome", "_removals", "_group_info")

    def __init__(self) -> None:
        self._welcome: dict[ConversationId, list[DeviceId]] = {}
        self._removals: dict[ConversationId, list[DeviceId]] = {}
        self._group_info: dict[ConversationId, bytes] = {}

    def set_welcome_recipients(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        self._welcome[conversation_id] = unique_devices(list(device_ids), "Welcome recipients")

    def welcome_recipients(self, conversation_id: ConversationId) -> list[DeviceId] | None:
        """The recipients for the next Welcome (None: none set)."""
        return self._welcome.get(conversation_id)

    def welcome_delivered(self, conversation_id: ConversationId) -> None:
        """Forget the recipients, once delivered only (a retried Welcome keeps them)."""
        self._welcome.pop(conversation_id, None)

    def set_commit_removals(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        removes = unique_devices(list(device_ids), "removed devices")
        if removes:
            self._removals[conversation_id] = removes
        else:
            self._removals.pop(conversation_id, None)

    def take_commit_removals(self, conversation_id: ConversationId) -> list[DeviceId]:
        """The declared removals, consumed by this Commit send whatever its outcome."""
        return self._removals.pop(conversation_id, [])

    def set_commit_group_info(self, conversation_id: ConversationId, group_info: bytes | None) -> None:
        if group_info is None:
            self._group_info.pop(conversation_id, None)
        elif type(group_info) is not bytes:
            raise InvalidInput("a GroupInfo is bytes")
        else:
            self._group_info[conversation_id] = group_info

    def take_commit_group_info(self, conversation_id: ConversationId) -> bytes | None:
        """The GroupInfo for the next Commit, consumed by this Commit send whatever its outcome."""
        return self._group_info.pop(conversation_id, None)


class RoutesNextCommit:
    """The ``set_next_*`` calls of :class:`Transport`, kept in ``self._pending`` (a
    :class:`PendingRouting`) for the send that uses them: one implementation for every transport."""

    _pending: PendingRouting

    async def set_next_welcome_recipients(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        self._pending.set_welcome_recipients(conversation_id, device_ids)

    async def set_next_commit_removals(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        self._pending.set_commit_removals(conversation_id, device_ids)

    async def set_next_commit_group_info(self, conversation_id: ConversationId, group_info: bytes | None) -> None:
        self._pending.set_commit_group_info(conversation_id, group_info)


@dataclass(frozen=True, slots=True)
class DeliveryLimits:
    """The abuse limits of a delivery service (``ping_server`` options; the memory service takes
    the same). A count or size of 0 turns that limit off.

    * Welcome inbox of each device: ``inbox_entries`` unacknowledged Welcomes and
      ``inbox_bytes`` (each entry counted at the size its recipient downloads): 409 ``inbox_full``.
    * Welcomes from a *stranger*: a sender account that is not the recipient's own and shares no
      conversation with it in which a device of each is a current member that has consented (a
      device consents to a membership by creating the conversation, by reading or posting to it,
      or when a non-stranger welcomed it; a stranger's Welcome makes a pending membership, which
      :meth:`Transport.leave_conversation` declines). At most ``stranger_per_sender``
      unacknowledged entries per (sender account, recipient device), ``stranger_entries`` and
      ``stranger_bytes`` per recipient device from all strangers together: 409 ``invite_limit``.
    * Storage quotas: a conversation's log holds at most ``conversation_envelopes`` envelopes
      and ``conversation_bytes``; an account stores at most ``account_bytes`` (what its devices
      posted to logs, its Welcome payloads, each stored once however many recipients, until the
      last recipient acknowledges it, and its unclaimed KeyPackages): 413 ``quota_exceeded``.
    * KeyPackage claims per ``claim_window_ms`` (fixed windows): another account gets at most
      ``claims_per_claimer`` one-time KeyPackages of one device, and all other accounts together
      ``claims_per_device``; beyond, a claim gets the device's last-resort KeyPackage (never an
      error). Claims of the device's own account are not limited.
    """

    inbox_entries: int = MAX_INBOX_ENTRIES
    inbox_bytes: int = MAX_INBOX_BYTES
    stranger_per_sender: int = MAX_STRANGER_WELCOMES_PER_SENDER
    stranger_entries: int = MAX_STRANGER_WELCOMES
    stranger_bytes: int = MAX_STRANGER_WELCOME_BYTES
    conversation_bytes: int = MAX_CONVERSATION_BYTES
    conversation_envelopes: int = MAX_CONVERSATION_ENVELOPES
    account_bytes: int = MAX_ACCOUNT_BYTES
    claim_window_ms: int = KEY_PACKAGE_CLAIM_WINDOW_MS
    claims_per_claimer: int = MAX_KEY_PACKAGE_CLAIMS_PER_CLAIMER
    claims_per_device: int = MAX_KEY_PACKAGE_CLAIMS_PER_DEVICE

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"DeliveryLimits.{name} must be a non-negative int")
        if self.claim_window_ms == 0:
            raise ValueError("DeliveryLimits.claim_window_ms must be positive")


def within(limit: int, value: int) -> bool:
    """``value`` respects ``limit`` (0: no limit)."""
    return limit == 0 or value <= limit


@dataclass(frozen=True, slots=True)
class WatchResult:
    """What :meth:`Transport.watch` found (all empty: nothing happened before the deadline).

    ``heads``: the watched conversations whose log, as far as this device may
    read it, goes beyond the position it was given: conversation id -> the
    seq of its last readable envelope (always greater than that position).
    ``forbidden``: the watched conversations this device may not read from the
    given position on (not a member of an existing conversation, another
    user's DeviceGroup, removed by a Commit at or before the position):
    ``fetch_since`` would answer 403 for them. ``welcomes``: this device's
    Welcome inbox holds at least one entry (``fetch_welcomes`` is not empty).
    """

    heads: Mapping[ConversationId, int] = field(default_factory=dict)
    forbidden: frozenset[ConversationId] = frozenset()
    welcomes: bool = False

    @property
    def news(self) -> bool:
        """Whether anything was reported (False: the wait ran out)."""
        return bool(self.heads or self.forbidden or self.welcomes)


@runtime_checkable
class Transport(Protocol):
    """The delivery service as one device sees it. All methods are coroutines."""

    # -- conversation logs ------------------------------------------------

    async def send(self, envelope: MessageEnvelope) -> int:
        """Hand ``envelope`` to the delivery service; return its server-assigned ``seq``.

        Checks, in order: ``envelope.sender_device`` must be this device (else
        403 ``forbidden``); then by kind:

        * Application, Commit, Proposal: appended to the conversation's log
          (the returned seq is their position); a Commit also carries the
          removals declared with :meth:`set_next_commit_removals`. The
          caller must be a member, or the
          conversation must not exist yet (it creates it), else 403
          ``forbidden``. A Commit is accepted only if ``envelope.epoch`` is
          the log's current epoch (any epoch up to ``MAX_EPOCH`` for the first
          Commit), else 409 ``epoch_advanced``.
        * Welcome: goes to the inboxes of the recipients set by
          :meth:`set_next_welcome_recipients` (return value 0) and makes them
          members. Without recipients: 400 ``invalid_request``; the caller
          must be a member (or create the conversation), else 403; an unknown
          or revoked recipient: 404 ``not_found`` and nobody gets it; a
          recipient outside the owner's account for a DeviceGroup: 403; a
          recipient whose inbox is full (``MAX_INBOX_ENTRIES`` entries, or
          ``MAX_INBOX_BYTES`` with this one): 409 ``inbox_full`` and nobody
          gets it; a recipient beyond the limits on Welcomes from strangers
          (:class:`DeliveryLimits`): 409 ``invite_limit`` and nobody gets it;
          the Welcome (stored once for all recipients) over the sender
          account's storage quota: 413 ``quota_exceeded``.

        Storage quotas of appended envelopes, checked after the epoch: the
        conversation's log full (envelopes or bytes) or the sender's account
        over its quota: 413 ``quota_exceeded``.

        When this returns, the server has durably applied the envelope. When it
        raises a definite rejection, the server did not apply it; any other
        failure is ambiguous.
        """
        ...

    async def fetch_since(
        self, conversation_id: ConversationId, cursor: SyncCursor, limit: int, *, wait_ms: int = 0
    ) -> list[MessageEnvelope]:
        """Envelopes of the conversation's log with ``seq > cursor.seq``, in order, at most ``limit``
        (1..``MAX_FETCH_LIMIT``). Fewer than ``limit`` means the end of the log was reached.

        ``wait_ms`` (0..``MAX_FETCH_WAIT_MS``, long polling): when nothing is
        newer than the cursor, wait up to that long for an envelope to arrive
        and return as soon as one does (``[]`` when none came).

        A conversation nobody has posted to yet has an empty log (``[]``, not
        an error); a non-member of an existing conversation gets 403
        ``forbidden``, a revoked device 403 ``device_revoked`` (also when
        revoked during the wait). A device removed by a Commit reads up to
        and including that Commit (fewer than ``limit`` then, as at the end of
        the log) and gets 403 once ``cursor`` is at it.
        """
        ...

    async def watch(self, positions: Mapping[ConversationId, int], *, wait_ms: int = 0) -> WatchResult:
        """Long-poll several conversations and the Welcome inbox at once: "has anything happened?".

        ``positions`` maps each watched conversation (at most
        ``MAX_WATCH_CONVERSATIONS``; none is allowed: then only the inbox is
        watched) to the seq this device has consumed up to (its cursor, 0 for
        none). The answer (a :class:`WatchResult`) names the conversations whose
        readable log goes beyond that seq, with their head seq; those this
        device may not read (reported, never their heads: the call says
        nothing about conversations the device is not in, except that it may
        not read them, which ``fetch_since`` says too); and whether the
        device's Welcome inbox is non-empty. A conversation nobody has posted
        to yet has no news (as ``fetch_since`` gives ``[]``).

        When there is something to report the call answers at once. Otherwise
        it waits up to ``wait_ms`` (0..``MAX_FETCH_WAIT_MS``) for an append to
        one of the conversations, a Welcome for this device, or a change that
        makes one forbidden, and answers as soon as one happens (an empty
        result when none did). It returns envelopes of no kind: fetch them
        with :meth:`fetch_since` / :meth:`fetch_welcomes`. It changes nothing.

        Order of checks: 400 ``invalid_request`` for a seq outside
        0..2**63-1 or a ``wait_ms`` outside its range; 413 ``too_large`` for
        more than ``MAX_WATCH_CONVERSATIONS`` conversations; then the caller
        (401 / 403 ``device_revoked``, also when revoked during the wait).
        """
        ...

    async def set_next_welcome_recipients(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        """Address the next Welcome sent for ``conversation_id`` to ``device_ids`` (at most
        ``MAX_DEVICE_LIST``). The transport forgets them once such a Welcome is delivered
        (not when it fails, so a retried Welcome still has them). May be a no-op."""
        ...

    async def set_next_commit_removals(self, conversation_id: ConversationId, device_ids: list[DeviceId]) -> None:
        """Declare that the next Commit sent for ``conversation_id`` removes ``device_ids`` (at most
        ``MAX_DEVICE_LIST``) from the group, so the server revokes their membership when, and only
        when, it accepts that Commit. Call it just before sending a Commit with Remove proposals
        (``[]`` clears a pending declaration). The next Commit send for that conversation
        consumes the declaration whatever its outcome, so it never rides on a later, unrelated
        Commit (call it again before re-sending). May be a no-op (then removed devices keep
        reading ciphertext they cannot decrypt until they are revoked).
        """
        ...

    async def set_next_commit_group_info(self, conversation_id: ConversationId, group_info: bytes | None) -> None:
        """Send ``group_info`` (MLSMessage bytes: the GroupInfo of the epoch the Commit starts, with
        its ratchet tree) with the next Commit sent for ``conversation_id`` (None clears it); the
        next Commit send consumes it whatever its outcome, as :meth:`set_next_commit_removals`.

        A conversation whose Commits bring GroupInfos is *verified* by the service
        (``ping_core.transport.handshake``): from the first such Commit on (the bootstrap) every
        Commit must be a current member's valid MLS PublicMessage commit for the current epoch,
        signed by the sending device's leaf, and bring the new epoch's GroupInfo, else 400
        ``invalid_commit`` (409 ``epoch_advanced`` first for another epoch); Proposals must be
        valid PublicMessage proposals of the current epoch (409 ``epoch_advanced`` /
        400 ``invalid_proposal``); the devices whose leaves a Commit removes stop being members at
        it (declared removals are not needed there); a Welcome goes only to devices the latest
        Commit added (403 ``forbidden``). A conversation never sent a GroupInfo keeps the
        routing rules alone.
        """
        ...

    async def fetch_group_info(self, conversation_id: ConversationId) -> bytes | None:
        """The GroupInfo of the verified conversation's current epoch, as its latest Commit brought
        it (for a member to rejoin by external commit); None when the conversation is not verified
        (or does not exist). Members only (403 ``forbidden``, a removed device too)."""
        ...

    # -- directory: devices ----------------------------------------------

    async def register_device(self, info: DeviceInfo, binding: DeviceBinding) -> None:
        """Register this device (``info``) under its account.

        The server checks ``info.device_id == SHA-256(info.signing_public_key)``,
        ``binding.verify()``, that ``binding`` names ``info.device_id`` and
        ``info.user_id``, and that the account public key is the one the
        account first registered with (trust on first use). Registering the
        same device again updates its label; a revoked device id is refused
        for good (403 ``device_revoked``).
        """
        ...

    async def list_devices(self, user_id: UserId) -> list[DeviceInfo]:
        """The account's registered, non-revoked devices (empty for an unknown account)."""
        ...

    async def revoke_device_remote(self, device_id: DeviceId, revocation: DeviceRevocation) -> None:
        """Revoke ``device_id`` on the service with the account's signed statement ``revocation``
        (``Identity.revoke(device_id)``): its KeyPackages are deleted, its Welcome inbox dropped,
        its memberships ended, every later request it makes is refused (403 ``device_revoked``)
        and the statement is kept for :meth:`list_revocations`.

        Any registered device of the device's account may deliver the statement (one that does
        not hold the account key included), the device itself too. Checks, in order:
        ``revocation.device_id`` is ``device_id`` (else 400 ``invalid_request``); the caller
        (401 / 403 ``device_revoked``); ``device_id`` is registered (404 ``not_found``); the
        caller belongs to the device's account (403 ``forbidden``); ``revocation`` names that
        account, with its registered key, and its signature verifies (403 ``forbidden``). A
        refusal stores nothing. Revoking an already revoked device with a valid statement
        succeeds (a device revoked before statements were kept gets this one).
        """
        ...

    async def list_revocations(self, user_id: UserId) -> list[DeviceRevocation]:
        """The revocations of ``user_id``'s devices the service holds, newest first, at most
        ``MAX_REVOCATION_LIST`` (empty for an unknown account). Public facts: any registered
        device may ask, so a member learns revocations it missed. The service checked each when
        it received it; a caller that does not trust the service calls ``verify()`` on each.
        The one call a revoked device may make: it gets its own statement (from its own
        account only; 403 ``device_revoked`` otherwise), so it can verify it before it wipes.
        """
        ...

    # -- directory: KeyPackages -----------------------------------------

    async def publish_key_packages(
        self, key_packages: list[bytes], last_resort: bytes | None = None, *, replace: bool = False
    ) -> None:
        """Add one-time KeyPackages (TLS-serialized MLSMessage(KeyPackage)) to this device's pool,
        and replace its last-resort KeyPackage when ``last_resort`` is given. At most
        ``MAX_KEY_PACKAGES_PER_PUBLISH`` per call.

        ``replace=True`` first deletes this device's unclaimed one-time KeyPackages, in the same
        atomic step (a claim sees either the old pool or the new one, never a mix or none): for a
        device whose published KeyPackages carry an outdated credential. The account's storage
        quota (413 ``quota_exceeded``) counts what the pool holds after the call; a refusal
        changes nothing.

        Publish only KeyPackages whose private keys are already durable
        (``MessagingClient.fresh_key_package`` checkpoints before returning).
        """
        ...

    async def claim_key_packages(self, user_id: UserId) -> list[tuple[DeviceId, bytes]]:
        """One KeyPackage for each non-revoked device of ``user_id`` except the calling device.

        Each claim removes a one-time KeyPackage from that device's pool; when
        the pool is empty the device's last-resort KeyPackage is returned (and
        kept). Devices with neither are left out of the result.
        """
        ...

    async def claim_device_key_packages(self, device_id: DeviceId, count: int) -> list[bytes]:
        """Up to ``count`` KeyPackages of one device (e.g. one per chat to admit a newly linked
        device to). One-time KeyPackages first; then the last-resort one fills the
        remaining slots. Fewer than ``count`` when the device has neither.
        """
        ...

    # -- directory: Welcome inbox --------------------------------------

    async def fetch_welcomes(self) -> list[MessageEnvelope]:
        """This device's Welcome inbox, oldest first: envelopes of kind Welcome whose ``seq`` is
        their position in the inbox (1, 2, ...). They stay until acknowledged.
        """
        ...

    async def ack_welcomes(self, up_to_seq: int) -> None:
        """Drop every inbox entry with ``seq <= up_to_seq`` (call after joining or refusing them)."""
        ...

    async def leave_conversation(self, conversation_id: ConversationId) -> None:
        """End this device's membership of the conversation on the service and drop its pending
        Welcomes for it (declining an invitation, or leaving without a Commit): from then on it
        may not read or post there (403) until a member welcomes it again. Succeeds when the
        device is no member (nothing to do). A DeviceGroup cannot be left (400
        ``invalid_request``: its members are its owner's devices; revoke a device instead).
        The MLS group still lists the device until a member commits its removal."""
        ...


@dataclass(frozen=True, slots=True)
class KeyPackageCount:
    """A device's KeyPackage stock on the delivery service."""

    unclaimed: int  # one-time KeyPackages in its pool, not claimed yet
    last_resort: bool  # whether it has a last-resort KeyPackage


@runtime_checkable
class KeyPackageSupply(Protocol):
    """Optional beside :class:`Transport` (the SDK does not need it; ``ping_core.connect`` and the
    command line use it to top up): how many KeyPackages this device has left on the service."""

    async def key_package_count(self) -> KeyPackageCount:
        """This device's unclaimed one-time KeyPackages and whether a last-resort one is stored."""
        ...
