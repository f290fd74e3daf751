"""MLSMessage (RFC 9420 §6): the envelope of everything sent on the wire."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from ping_core.errors import MlsDecodeError, MlsReason
from ping_core.mls.tls import Reader, Writer

from .enums import ProtocolVersion, WireFormat
from ping_core.mls.structs.content import PrivateMessage, PublicMessage
from .group_info import GroupInfo
from .key_package import KeyPackage
from .welcome import Welcome

__all__ = ["MLSMessage", "MessageBody"]

MessageBody = Union[PublicMessage, PrivateMessage, Welcome, GroupInfo, KeyPackage]

_WIRE_FORMAT_OF: dict[type, WireFormat] = {
    PublicMessage: WireFormat.PUBLIC_MESSAGE,
    PrivateMessage: WireFormat.PRIVATE_MESSAGE,
    Welcome: WireFormat.WELCOME,
    GroupInfo: WireFormat.GROUP_INFO,
    KeyPackage: WireFormat.KEY_PACKAGE,
}
_READERS: dict[int, Callable[[Reader], MessageBody]] = {
    1: PublicMessage.read,
    2: PrivateMessage.read,
    3: Welcome.read,
    4: GroupInfo.read,
    5: KeyPackage.read,
}


@dataclass(frozen=True, slots=True)
class MLSMessage:
    """``struct { ProtocolVersion version = mls10; WireFormat wire_format;
    select (wire_format) {...} } MLSMessage``.

    ``wire_format`` follows from the body's class. Only mls10 decodes: another
    version may lay the body out differently, so it is refused, as is an
    unknown wire format.
    """

    body: MessageBody

    @property
    def wire_format(self) -> WireFormat:
        return _WIRE_FORMAT_OF[type(self.body)]

    @property
    def version(self) -> ProtocolVersion:
        return ProtocolVersion.MLS10

    def write(self, w: Writer) -> None:
        wf = _WIRE_FORMAT_OF.get(type(self.body))
        if wf is None:
            raise TypeError(f"not an MLSMessage body: {type(self.body).__name__}")
        w.u16(ProtocolVersion.MLS10)
        w.u16(wf)
        self.body.write(w)

    @classmethod
    def read(cls, r: Reader) -> MLSMessage:
        version = r.u16()
        if version != 1:
            raise MlsDecodeError(f"unsupported protocol version {version}", reason=MlsReason.UNSUPPORTED)
        wf = r.u16()
        read = _READERS.get(wf)
        if read is None:
            raise MlsDecodeError(f"unknown wire format {wf}", reason=MlsReason.MALFORMED)
        return cls(read(r))
