"""The ``vault.*`` RPC methods: an account database's at-rest key and its optional passphrase.

Every Ping database in the browser is sealed (``static/pingidb.mjs``). By
default its key is a non-extractable WebCrypto key stored in the database
itself. An ACCOUNT may add a passphrase: its key is then stored only wrapped
under PBKDF2-SHA256(passphrase), and each JS context (a tab's worker, the
service worker) must unlock it before the account opens there.

The methods apply to ONE account database, ``ping-account-<user id>``, named
by ``params["account"]`` (the 64-hex user id; absent: the account of this
context's profile, as the page's ``vaultStatus()``, ``unlock()``... call them),
in THIS context:

``vault.status {account?}``                -> ``{sealed, passphrase, locked}``
``vault.unlock {account?, passphrase}``    -> status; wrong passphrase: ``StorageLocked``, nothing changes
``vault.lock {account?}``                  -> status; this context forgets the key (passphrase: locked again)
``vault.set_passphrase {account?, passphrase: str | null}`` -> status; a string sets or changes it
                                              (re-keys and re-seals every record in one transaction),
                                              null removes it; the account must be unlocked here

The origin's registry database (``ping-accounts``) is sealed with its device
key but never takes a passphrase: it must open before any account is chosen.
The passphrase is passed straight to WebCrypto; it is never stored, logged,
or put in an exception.
"""

from __future__ import annotations

from typing import Any

from ping_core.errors import InvalidInput

from .accountdb import ACCOUNT_STORES, account_db_name
from .idb import registered_js_module, storage_error
from .rpc import rpc

__all__ = ["status", "unlock", "lock", "set_passphrase"]


async def _db_name(params: dict[str, Any]) -> str:
    """The database ``params["account"]`` names; absent or null: this profile's account's.

    The profile's account comes from the registry (never from the account's own
    database), so it is found while that database is locked by a passphrase.
    """
    account = params.get("account")
    if account is None:
        from .sdk import sdk

        account = await sdk().account_hex()
        if account is None:
            raise InvalidInput("this profile has no account yet: nothing to lock or unlock")
    if not isinstance(account, str):
        raise InvalidInput("vault methods take {account?: <64 hex user id>} (default: this profile's account)")
    return account_db_name(account)


def _passphrase(params: dict[str, Any], *, nullable: bool) -> str | None:
    value = params.get("passphrase")
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise InvalidInput("a passphrase is a non-empty string of at most 1024 characters")
    return value


async def _call(what: str, fn: str, *args: Any) -> Any:
    from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found,unused-ignore]

    js = registered_js_module()
    try:
        return await getattr(js, fn)(*[to_js(a) if isinstance(a, (list, tuple)) else a for a in args])
    except JsException as exc:
        raise storage_error(what, exc) from None


async def _existing(params: dict[str, Any]) -> str:
    name = await _db_name(params)
    if not await _call("IndexedDB lookup failed", "exists", name):
        raise InvalidInput(f"no account {name[len('ping-account-'):][:16]}... in this browser")
    return name


@rpc("vault.status")
async def status(params: dict[str, Any]) -> dict[str, bool]:
    """``{sealed, passphrase, locked}`` of the account's database in this context."""
    name = await _existing(params)
    raw = await _call("vault status failed", "status", name, list(ACCOUNT_STORES))
    return {k: bool(getattr(raw, k)) for k in ("sealed", "passphrase", "locked")}


@rpc("vault.unlock")
async def unlock(params: dict[str, Any]) -> dict[str, bool]:
    """Unlock the account here with its passphrase (no-op without one); wrong: ``StorageLocked``."""
    passphrase = _passphrase(params, nullable=False)
    name = await _existing(params)
    await _call("vault unlock failed", "unlock", name, list(ACCOUNT_STORES), passphrase)
    return await status(params)


@rpc("vault.lock")
async def lock(params: dict[str, Any]) -> dict[str, bool]:
    """Forget the account's key in this context (with a passphrase, it is locked here again)."""
    name = await _existing(params)
    registered_js_module().lock(name)
    return await status(params)


@rpc("vault.set_passphrase")
async def set_passphrase(params: dict[str, Any]) -> dict[str, bool]:
    """Set, change (a string) or remove (``null``) the account's passphrase; it must be unlocked here."""
    passphrase = _passphrase(params, nullable=True)
    name = await _existing(params)
    await _call("vault set_passphrase failed", "setPassphrase", name, list(ACCOUNT_STORES), passphrase)
    return await status(params)
