"""Admitting a new device of this account to its chats: one outcome per chat, never raised.

``AdmitChatStatus`` is a closed set of variants (``Admitted``, ``Skipped``, ``Failed``): hosts
branch on them with ``isinstance`` (their ``__name__`` is also the variant's name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable, ClassVar

from ping_core.clientstate import ClientState
from ping_core.errors import InvalidInput, PingError
from ping_core.ids import ConversationId, DeviceId

__all__ = ["AdmitChatStatus", "AdmitChatOutcome", "admit_to_chats"]

#: ``MessagingClient.add_members`` (conversation, entries, now_ms, for_user=...).
AddMembers = Callable[..., Awaitable[None]]


class AdmitChatStatus:
    """Per-chat result of :meth:`MessagingClient.admit_device_to_chats`:
    ``AdmitChatStatus.Admitted()``, ``.Skipped(reason)`` or ``.Failed(error, exception)``."""

    __slots__ = ()
    Admitted: ClassVar[type[_Admitted]]
    Skipped: ClassVar[type[_Skipped]]
    Failed: ClassVar[type[_Failed]]

    @property
    def kind(self) -> str:
        """The variant's name: ``"Admitted"``, ``"Skipped"`` or ``"Failed"`` (for views and logs)."""
        return type(self).__name__

    @property
    def detail(self) -> str | None:
        """The skip reason or the failure's message; ``None`` when admitted."""
        return None


@dataclass(frozen=True, slots=True)
class _Admitted(AdmitChatStatus):
    """The device is now an MLS leaf of the chat; the Commit and its Welcome were sent."""


@dataclass(frozen=True, slots=True)
class _Skipped(AdmitChatStatus):
    """Not admitted on purpose (``"device_group"``, ``"already_member"``)."""

    reason: str

    @property
    def detail(self) -> str | None:
        return self.reason


@dataclass(frozen=True, slots=True)
class _Failed(AdmitChatStatus):
    """MLS, storage or transport refused; ``exception`` is the structured error."""

    error: str
    exception: PingError | None = field(default=None, compare=False)

    @property
    def detail(self) -> str | None:
        return self.error


AdmitChatStatus.Admitted = _Admitted
AdmitChatStatus.Skipped = _Skipped
AdmitChatStatus.Failed = _Failed
for _variant, _name in ((_Admitted, "Admitted"), (_Skipped, "Skipped"), (_Failed, "Failed")):
    _variant.__name__ = _name
    _variant.__qualname__ = f"AdmitChatStatus.{_name}"


@dataclass(frozen=True, slots=True)
class AdmitChatOutcome:
    conversation_id: ConversationId
    status: AdmitChatStatus


async def admit_to_chats(
    state: ClientState, add_members: AddMembers, device: DeviceId, kps_per_chat: object, now_ms: int
) -> list[AdmitChatOutcome]:
    """Add ``device`` to each chat of ``kps_per_chat`` (``(ConversationId, KeyPackage bytes)``
    items) with ``add_members`` for this account; per-chat failures are captured, never raised.
    The DeviceGroup is ``Skipped("device_group")`` (the linking ticket handled it), a chat the
    device is already in ``Skipped("already_member")``."""
    if not isinstance(kps_per_chat, (list, tuple)):
        raise InvalidInput("kps_per_chat must be a list of (ConversationId, KeyPackage bytes)")
    outcomes = []
    for item in kps_per_chat:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], ConversationId):
            raise InvalidInput("each item is (ConversationId, KeyPackage bytes)")
        conv_id, kp = item
        conv = state.convs.get(conv_id)
        status: AdmitChatStatus
        if conv is not None and conv.meta.is_device_group:
            status = AdmitChatStatus.Skipped("device_group")
        elif conv is not None and device in conv.leaves:
            status = AdmitChatStatus.Skipped("already_member")
        else:
            try:
                await add_members(conv_id, [(device, kp)], now_ms, for_user=state.user_id())
                status = AdmitChatStatus.Admitted()
            except PingError as exc:
                status = AdmitChatStatus.Failed(f"{type(exc).__name__}: {exc}", exc)
        outcomes.append(AdmitChatOutcome(conv_id, status))
    return outcomes
