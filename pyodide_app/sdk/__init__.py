"""The SDK in the browser: the RPC methods the page calls, one handler group per job.

One :class:`~pyodide_app.sdk.core.BrowserSdk` per context (a tab's worker, or
the service worker) and profile holds the account: which account a profile of
this browser holds is in the registry database ``ping-accounts``
(:mod:`.profiles`), and that account is opened as an
:class:`~pyodide_app.session.AccountSession` (MLS state, host records and
decrypted messages in the account's IndexedDB database; a ``FetchTransport``
to the page's origin; one writer at a time through the account's Web Lock).

What :meth:`BrowserSdk.ensure_online` does is what ``ping_core.connect`` does on
CPython, with the same shared host flows (``ping_core.account``): register the
device (every start: idempotent, refreshes the label) and top up its
KeyPackages (below half of ``KEY_PACKAGES`` unclaimed one-time KeyPackages on
the server, fresh ones fill it up; a last-resort one when the server has none).
Joining a Welcome uses up one of ours: the stock is topped up after the join.
Inviting a user and admitting a new device of this account to its chats are
``ping_core.account``'s flows too; the SDK goes through ``MessagingClient`` and
those flows, never the transport, for them.

The modules, each with one job (:data:`HANDLERS` lists the handler groups):

- :mod:`.core`          ``BrowserSdk``: the session opened from the registry, registration, shared state
- :mod:`.profiles`      the registry: profiles, their accounts and settings
- :mod:`.delivery`      decrypted messages stored with the state that consumed them; unacked ones
- :mod:`.syncing`       sync rounds (``sync.run``, ``sw.cold_sync``) and the Welcome inbox
- :mod:`.accounts`      ``account.*`` (but ``account.devices``)
- :mod:`.invitations`   ``invitation.*``
- :mod:`.conversations` ``conversation.*``: list, create, rename, read, send, join, process, commit
- :mod:`.members`       ``conversation.*``: invite, remove, roster, add/remove members
- :mod:`.snapshots`     ``conversation.export_secret``, snapshots; ``dev.sdk.state``
- :mod:`.directory`     ``directory.labels``, ``account.devices``
- :mod:`.devices`       ``device.*``
- :mod:`.linking`       ``link.*``
- :mod:`.updates`       ``live.*`` and ``message.*`` (acknowledgement)
- :mod:`.params`, :mod:`.views`, :mod:`.events`: checked params, plain-data views, events to the page

RPC methods: each handler of the groups above declares its name with
:func:`pyodide_app.rpc.rpc` ("<noun>.<verb>", snake_case: ``account.whoami``,
``conversation.send``...); that is the one table. docs/browser-sdk.md
documents each method's params and result, static/ping.js wraps each one
in camelCase and static/ping.d.ts types them; tests/browser/test_types.py
checks the four agree. Params and results are plain data; ids are lowercase
hex; payloads, KeyPackages, envelopes, snapshots and secrets are bytes
(Uint8Array in JS). A message is ``{conv, seq, user, device, bytes, text, time,
epoch}`` (``text``: the payload when it is valid UTF-8, else null).

Events (``pinghost.emit``; the page gets them whichever context produced them;
each carries ``profile``, the local profile it belongs to):
``{type: "messages", conv, messages}``, ``{type: "conversations", changed}``,
``{type: "invitations", pending}`` and, for each new one, ``{type: "invitation", invitation}``,
``{type: "problems", problems: [{conv, kind, seq, sender_device,
detail}]}`` (what a sync met: ``ping_core.sync.SyncProblemKind`` values), ``{type: "fork-healed", conv}``,
``{type: "revoked", message}`` (this device was revoked: its state is wiped),
``{type: "status", online, error}``, ``{type: "account", state}``.

Profiles: several accounts per origin. A profile is a local name (default
"default"); the registry maps it to one account, whose data is its own
database ``ping-account-<user hex>`` under its own Web Lock; one worker per
open profile.

Errors are ``ping_core.errors`` exceptions (the RPC layer turns them into
``{name, message[, status, code]}``).
"""

from __future__ import annotations

from ping_core.errors import StorageError

from ..rpc import register_object
from .accounts import AccountRpc
from .conversations import ConversationRpc
from .core import KEY_PACKAGES, BrowserSdk, RpcHandlers
from .devices import DeviceRpc
from .directory import DirectoryRpc
from .invitations import InvitationRpc
from .linking import LinkRpc
from .members import MemberRpc
from .profiles import DEFAULT_PROFILE, REGISTRY_DB, check_profile
from .snapshots import SnapshotRpc
from .syncing import SyncRpc
from .updates import UpdateRpc

__all__ = [
    "BrowserSdk",
    "HANDLERS",
    "register",
    "sdk",
    "KEY_PACKAGES",
    "REGISTRY_DB",
    "DEFAULT_PROFILE",
    "check_profile",
]

#: The handler groups: together they declare the SDK's RPC methods (each name once).
HANDLERS: tuple[type[RpcHandlers], ...] = (
    AccountRpc,
    ConversationRpc,
    DeviceRpc,
    DirectoryRpc,
    InvitationRpc,
    LinkRpc,
    MemberRpc,
    SnapshotRpc,
    SyncRpc,
    UpdateRpc,
)

_sdk: BrowserSdk | None = None


def sdk() -> BrowserSdk:
    """This context's SDK (created by :func:`register`)."""
    if _sdk is None:
        raise StorageError("the SDK is not registered in this context")
    return _sdk


def register(*, context: str = "worker", server_url: str = "", dev: bool = False, profile: str = DEFAULT_PROFILE) -> BrowserSdk:
    """Create this context's :class:`BrowserSdk` for ``profile`` and add the RPC methods of every
    handler group (those declared with :func:`pyodide_app.rpc.rpc`) to the worker's table."""
    global _sdk
    if _sdk is not None:
        return _sdk
    s = _sdk = BrowserSdk(server_url=server_url, context=context, profile=profile)
    for group in HANDLERS:
        register_object(group(s), dev=dev)
    return s
