"""``conversation.*`` for the conversations themselves: list, create, rename, read, send, and the
MLS operations a page may drive by hand (join a Welcome, process an envelope, commit proposals).
Who is in a conversation is :mod:`pyodide_app.sdk.members`'s; secrets and snapshots are
:mod:`pyodide_app.sdk.snapshots`'."""

from __future__ import annotations

import logging
from typing import Any

from ping_core.account import invite_user
from ping_core.errors import InvalidInput, PingError, TransportError
from ping_core.message import IncomingMessage, MessageEnvelope

from .. import inbox
from ..rpc import rpc
from ..session import now_ms
from .core import RpcHandlers, conversation_meta
from .params import bytes_param, conv_param, payload_param, text_param
from .views import conv_view

__all__ = ["ConversationRpc"]

log = logging.getLogger("pyodide_app.sdk")

#: The largest encoded envelope (a Welcome or any other) a page may hand in.
MAX_ENVELOPE = 4 * 1024 * 1024


class ConversationRpc(RpcHandlers):
    """``conversation.list``, ``.create``, ``.rename``, ``.messages``, ``.send``, ``.join``,
    ``.process_envelope``, ``.commit_proposals``."""

    @rpc("conversation.list")
    async def conversations(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """This account's conversations (not the device group), the latest active first."""
        s = await self.sdk.require()
        async with s.use() as c:
            metas = [m for m in c.list_conversations() if not m.is_device_group]
        out = []
        for meta in metas:
            last = await s.db.tail(inbox.conversation_prefix(meta.id.as_hex()), 1)
            view = inbox.message_view(*last[0]) if last else None
            out.append(conv_view(meta, view, removed=meta.id in self.sdk.forbidden))
        out.sort(key=lambda v: max(v["created_at"], v["last"]["time"] if v["last"] else 0), reverse=True)
        return out

    @rpc("conversation.create")
    async def create_conversation(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{name?}`` (absent, null or "": an unnamed conversation) -> the conversation."""
        given = text_param(params, "name", max_len=256, allow_empty=True) if params.get("name") is not None else ""
        name = given or None
        s = await self.sdk.require()
        async with s.use() as c:
            conv = await c.create_conversation(name, now_ms())
            # The account's other devices read it too (best effort: the chat exists either way).
            try:
                await invite_user(c, conv, c.user_id(), now_ms(), required=False)
            except PingError as exc:
                log.warning("create: the account's other devices were not added: %s", type(exc).__name__)
            meta = conversation_meta(c, conv)
        self.sdk.emit_changed([conv.as_hex()])
        return conv_view(meta)

    @rpc("conversation.rename")
    async def rename(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, name}`` ("": no name) -> the conversation."""
        conv = conv_param(params)
        name = text_param(params, "name", max_len=256, allow_empty=True) or None
        s = await self.sdk.require()
        async with s.use() as c:
            conversation_meta(c, conv)
            await c.set_conversation_name(conv, name, now_ms())
            meta = conversation_meta(c, conv)
        self.sdk.emit_changed([conv.as_hex()])
        return conv_view(meta)

    @rpc("conversation.messages")
    async def messages(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """``{conv, limit?}`` -> the latest ``limit`` (default 200) stored messages, oldest first."""
        conv = conv_param(params)
        limit = params.get("limit", 200)
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be 1..10000")
        s = await self.sdk.require()
        out = []
        for key, raw in await s.db.tail(inbox.conversation_prefix(conv.as_hex()), limit):
            try:
                out.append(inbox.message_view(key, raw))
            except InvalidInput as exc:
                log.warning("skipping a stored message: %s", exc)
        return out

    @rpc("conversation.send")
    async def send(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{conv, payload}`` (text, sent as UTF-8, or bytes) -> the stored message, once the server took it."""
        conv = conv_param(params)
        # "text": the parameter's name before payloads were binary, still taken.
        plaintext = payload_param(params, "payload" if "payload" in params or "text" not in params else "text")
        s = await self.sdk.require()
        async with s.use() as c:
            try:
                env = await c.send(conv, plaintext, now_ms())
            except TransportError as exc:
                if exc.status == 403:
                    self.sdk.set_access(conv, False)
                raise
            key, value = inbox.record_of(
                conv, env.seq, c.user_id(), c.device_id(), plaintext, env.hlc.wall_ms, env.epoch
            )
            await s.db.state.flush({key: value})
        message = inbox.message_view(key, value)
        self.sdk.emit({"type": "messages", "conv": conv.as_hex(), "messages": [message]})
        return message

    @rpc("conversation.join")
    async def join(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{welcome}`` (an encoded Welcome MessageEnvelope) -> the joined conversation."""
        env = MessageEnvelope.decode(bytes_param(params, "welcome", max_len=MAX_ENVELOPE))
        s = await self.sdk.require()
        async with s.use() as c:
            conv = await c.join_conversation(env, now_ms())
            meta = conversation_meta(c, conv)
        self.sdk.rewatch()
        self.sdk.emit_changed([conv.as_hex()])
        return conv_view(meta)

    @rpc("conversation.process_envelope")
    async def process_envelope(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{envelope}`` (an encoded MessageEnvelope) -> ``{message}``: the stored message, or null for a
        handshake message or one with nothing to deliver."""
        env = MessageEnvelope.decode(bytes_param(params, "envelope", max_len=MAX_ENVELOPE))
        s = await self.sdk.require()
        async with s.use() as c:

            async def take() -> list[IncomingMessage]:
                msg = await c.process_envelope(env, now_ms())
                return [msg] if msg is not None else []

            messages = await self.sdk.store_messages(s, take)
        self.sdk.emit_messages(messages)
        return {"message": messages[0] if messages else None}

    @rpc("conversation.commit_proposals")
    async def commit_proposals(self, params: dict[str, Any]) -> dict[str, Any]:
        """Commit the other members' pending proposals (and owed rejoins): ``{committed: [conv id]}``."""
        s = await self.sdk.require()
        async with s.use() as c:
            committed = await c.commit_pending_proposals(now_ms())
        if committed:
            self.sdk.emit_changed([cid.as_hex() for cid in committed])
        return {"committed": [cid.as_hex() for cid in committed]}
