"""Fault injection for the in-memory delivery service (:mod:`ping_core.testing.memory`).

:meth:`FaultPlan.inject` schedules failures; each request of the service asks
:meth:`FaultPlan.take` for its fault. A fault that does not apply the request
raises there, before the request changes anything; one that applies it
(``TIMEOUT_AFTER_APPLY``, ``SERVER_ERROR_AFTER_APPLY``) is raised by
:meth:`FaultPlan.after` once the request has applied. The faults and what they
raise are tabled in :mod:`ping_core.testing.memory`'s docstring.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ping_core.errors import InvalidInput, TransportError
from ping_core.ids import ConversationId, DeviceId
from ping_core.message import MessageKind

__all__ = ["Fault", "FaultPlan"]


class Fault(enum.Enum):
    """A failure :meth:`MemoryDeliveryService.inject` can schedule (see module docstring)."""

    REJECT = "reject"
    SERVER_ERROR = "server_error"
    TIMEOUT_BEFORE_APPLY = "timeout_before_apply"
    TIMEOUT_AFTER_APPLY = "timeout_after_apply"
    SERVER_ERROR_AFTER_APPLY = "server_error_after_apply"


_APPLIES = {Fault.TIMEOUT_AFTER_APPLY, Fault.SERVER_ERROR_AFTER_APPLY}


@dataclass
class _FaultRule:
    method: str
    fault: Fault
    kind: MessageKind | None
    device: DeviceId | None
    conversation: ConversationId | None
    remaining: int
    status: int
    code: str


class FaultPlan:
    """The faults scheduled for the next matching calls, in the order they were injected."""

    def __init__(self) -> None:
        self._rules: list[_FaultRule] = []

    def inject(
        self,
        method: str,
        fault: Fault,
        *,
        kind: MessageKind | None = None,
        device: DeviceId | None = None,
        conversation: ConversationId | None = None,
        count: int = 1,
        status: int = 409,
        code: str = "conflict",
    ) -> None:
        """Make the next ``count`` calls of ``method`` that match (envelope ``kind``, calling
        ``device``, ``conversation``) fail with ``fault``. ``status``/``code`` apply to REJECT."""
        if fault is Fault.REJECT and not 400 <= status < 500:
            raise InvalidInput("a REJECT fault needs a 4xx status")
        self._rules.append(_FaultRule(method, fault, kind, device, conversation, count, status, code))

    def clear(self) -> None:
        """Drop every scheduled fault."""
        self._rules.clear()

    def take(
        self, method: str, caller: DeviceId, kind: MessageKind | None, conversation: ConversationId | None
    ) -> Fault | None:
        """The fault of this call (consumed), or None. A fault that does not apply the request raises here."""
        for rule in self._rules:
            if rule.method != method:
                continue
            if rule.kind is not None and rule.kind != kind:
                continue
            if rule.device is not None and rule.device != caller:
                continue
            if rule.conversation is not None and rule.conversation != conversation:
                continue
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._rules.remove(rule)
            if rule.fault not in _APPLIES:
                _raise(rule.fault, rule.status, rule.code)
            return rule.fault
        return None

    @staticmethod
    def after(fault: Fault | None) -> None:
        """Raise the ambiguous error of a fault that lets the request apply (nothing for None)."""
        if fault is Fault.TIMEOUT_AFTER_APPLY:
            raise TransportError("timed out (the server applied the request)", status=None, code="timeout")
        if fault is Fault.SERVER_ERROR_AFTER_APPLY:
            raise TransportError("server error after applying", status=500, code="server_error")


def _raise(fault: Fault, status: int, code: str) -> None:
    if fault is Fault.REJECT:
        raise TransportError(f"rejected ({code})", status=status, code=code)
    if fault is Fault.SERVER_ERROR:
        raise TransportError("service unavailable", status=503, code="server_error")
    raise TransportError("timed out (the server did not apply the request)", status=None, code="timeout")
