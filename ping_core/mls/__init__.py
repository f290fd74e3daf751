"""Ping's RFC 9420 (MLS) engine for cipher suite 1.

Sans-IO and synchronous: no asyncio, no files, no sockets. Everything random
comes from the ``CryptoProvider`` it is given. The only module of ``ping_core``
it imports is ``ping_core.errors``.
"""

from __future__ import annotations

__all__: list[str] = []
