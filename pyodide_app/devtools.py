"""``dev.*`` RPC methods: drive the worker's building blocks from a page.

Each is declared with ``@rpc(name, dev=True)``; the composition root
(pyodide_app.worker) registers them only when the worker boots with
``{dev: true}`` (the page at ``/?dev=1``); the browser tests use them to run
the crypto vectors through the worker's crypto backends, round-trip CBOR, use the IndexedDB store and the
fetch bridge; benchmarks run their code with ``dev.exec``. They expose
nothing a page could not do with the worker anyway (the page owns its
worker), but they are not part of the SDK's API.
"""

from __future__ import annotations

from typing import Any

import cbor2

from ping_core.errors import InvalidInput
from ping_core.mls.crypto import CryptoProvider, available_backends, default_provider

from . import fetch
from .crypto import NobleProvider
from .crypto_select import last_selection
from .idb import IndexedDbBlobStore
from .webcrypto import WebCryptoProvider
from .rpc import rpc

__all__ = ["CRYPTO_OPS"]

# The provider methods dev.crypto may call (nothing private, no attributes).
CRYPTO_OPS = frozenset(
    {
        "random",
        "hash",
        "hmac",
        "hkdf_extract",
        "hkdf_expand",
        "aead_seal",
        "aead_open",
        "sign_keygen",
        "sign_public",
        "sign",
        "verify",
        "dh_keygen",
        "dh_public",
        "dh",
    }
)

_stores: dict[str, IndexedDbBlobStore] = {}


# One instance per backend name for dev.crypto's ``backend`` parameter.
_named: dict[str, CryptoProvider] = {}


def _backend(name: object) -> CryptoProvider:
    """The default provider (``name`` None) or a named one of this worker's backends."""
    if name is None:
        return default_provider()
    provider = _named.get(name) if isinstance(name, str) else None
    if provider is None:
        if name == "noble":
            provider = NobleProvider()
        elif name == "webcrypto":
            # Also where boot chose noble (jspi=0): the tests then see its fallbacks.
            provider = WebCryptoProvider()
        elif name == "webcrypto-all":  # every AES-GCM call through WebCrypto too
            provider = WebCryptoProvider(aead_min=0)
        else:
            raise InvalidInput("backend is 'noble', 'webcrypto' or 'webcrypto-all' (or absent: the default)")
        _named[name] = provider
    return provider


@rpc("dev.provider", dev=True)
def _provider(params: dict[str, Any]) -> dict[str, Any]:
    """The default backend, the registered ones, and the boot-time choice."""
    choice = last_selection()
    return {
        "name": default_provider().name,
        "backends": available_backends(),
        "selection": choice.as_dict() if choice is not None else None,
    }


@rpc("dev.crypto", dev=True)
def _crypto(params: dict[str, Any]) -> Any:
    """``{op, args, backend?}``: call ``<provider>.<op>(*args)``; tuples become lists."""
    op = params.get("op")
    args = params.get("args", [])
    if op not in CRYPTO_OPS or not isinstance(args, list):
        raise InvalidInput("dev.crypto takes {op: <provider method>, args: [...], backend?}")
    result = getattr(_backend(params.get("backend")), op)(*args)
    return list(result) if isinstance(result, tuple) else result


@rpc("dev.crypto_counts", dev=True)
def _crypto_counts(params: dict[str, Any]) -> dict[str, int]:
    """``{backend?}``: the WebCrypto provider's call counters (empty for others)."""
    counts = getattr(_backend(params.get("backend")), "counts", None)
    return dict(counts) if isinstance(counts, dict) else {}


@rpc("dev.exec", dev=True)
async def _exec(params: dict[str, Any]) -> Any:
    """``{code}``: run Python in this worker (benchmarks); returns the global ``result``.

    Runs inside the RPC task, so the code may use the WebCrypto provider.
    Dev only, like every dev.* method: the page owns its worker anyway.
    """
    code = params.get("code")
    if not isinstance(code, str):
        raise InvalidInput("dev.exec takes {code: str}")
    namespace: dict[str, Any] = {"__name__": "__dev_exec__"}
    exec(compile(code, "<dev.exec>", "exec"), namespace)  # noqa: S102
    return namespace.get("result")


@rpc("dev.cbor_roundtrip", dev=True)
def _cbor_roundtrip(params: dict[str, Any]) -> dict[str, Any]:
    """``{value}``: its CBOR encoding and the value decoded back from it."""
    encoded = cbor2.dumps(params.get("value"), canonical=True)
    return {"encoded": encoded, "decoded": cbor2.loads(encoded)}


async def _store(params: dict[str, Any]) -> IndexedDbBlobStore:
    db = params.get("db", "ping-dev")
    if not isinstance(db, str):
        raise InvalidInput("db must be a string")
    store = _stores.get(db)
    if store is None:
        store = _stores[db] = await IndexedDbBlobStore.open(db)
    return store


@rpc("dev.blob.put", dev=True)
async def _blob_put(params: dict[str, Any]) -> None:
    await (await _store(params)).put(params.get("key"), params.get("value"))  # type: ignore[arg-type]


@rpc("dev.blob.get", dev=True)
async def _blob_get(params: dict[str, Any]) -> bytes | None:
    return await (await _store(params)).get(params.get("key"))  # type: ignore[arg-type]


@rpc("dev.blob.delete", dev=True)
async def _blob_delete(params: dict[str, Any]) -> None:
    await (await _store(params)).delete(params.get("key"))  # type: ignore[arg-type]


@rpc("dev.blob.list", dev=True)
async def _blob_list(params: dict[str, Any]) -> list[str]:
    return await (await _store(params)).list(params.get("prefix", ""))


@rpc("dev.blob.items", dev=True)
async def _blob_items(params: dict[str, Any]) -> list[list[Any]]:
    return [[k, v] for k, v in await (await _store(params)).items(params.get("prefix", ""))]


@rpc("dev.blob.commit", dev=True)
async def _blob_commit(params: dict[str, Any]) -> None:
    puts = params.get("puts", {})
    deletes = params.get("deletes", [])
    if not isinstance(puts, dict) or not isinstance(deletes, list):
        raise InvalidInput("dev.blob.commit takes {puts: {key: bytes}, deletes: [key]}")
    await (await _store(params)).commit(puts, deletes)


@rpc("dev.fetch", dev=True)
async def _fetch(params: dict[str, Any]) -> dict[str, Any]:
    """``{url, method?, body?}``: the status and body of a 2xx answer (else TransportError)."""
    url = params.get("url")
    if not isinstance(url, str):
        raise InvalidInput("dev.fetch takes {url}")
    # A path stays relative: fetch resolves it against the worker's own URL. (Reading
    # js.location here fails with "Illegal invocation" in the session that records the
    # boot snapshot, whose js globals are proxies.)
    resp = await fetch.request(params.get("method", "GET"), url, body=params.get("body"))
    return {"status": resp.status, "body": resp.body, "content_type": resp.content_type}
