"""Crypto providers for cipher suite 1 and the choice of the default one.

Backends register themselves with a priority; :func:`default_provider`
returns an instance of the highest-priority backend that is available.
pyca ``cryptography`` registers itself here when it can be imported; a host
such as the browser worker registers its own backend at boot (``ping_core``
never imports host code). A faster backend added later (for example
WebCrypto through JSPI) registers with a higher priority and no caller changes.
"""

from __future__ import annotations

from typing import Callable

from ping_core.errors import CryptoError, MlsReason

from .provider import AEAD_KEY_LEN, AEAD_NONCE_LEN, AEAD_TAG_LEN, HASH_LEN, CryptoProvider, HashlibKdf

__all__ = [
    "CryptoProvider",
    "HashlibKdf",
    "default_provider",
    "register_backend",
    "available_backends",
    "HASH_LEN",
    "AEAD_KEY_LEN",
    "AEAD_NONCE_LEN",
    "AEAD_TAG_LEN",
]

_backends: dict[str, tuple[int, Callable[[], CryptoProvider]]] = {}
_default: CryptoProvider | None = None


def register_backend(name: str, factory: Callable[[], CryptoProvider], priority: int) -> None:
    """Make a backend available; the highest ``priority`` becomes the default.

    Re-registering a name replaces it. The cached default is dropped so the
    next :func:`default_provider` call sees the change.
    """
    global _default
    _backends[name] = (priority, factory)
    _default = None


def available_backends() -> list[str]:
    """Names of the registered backends, best first."""
    return [name for name, _ in sorted(_backends.items(), key=lambda kv: -kv[1][0])]


def default_provider() -> CryptoProvider:
    """The shared instance of the best available backend.

    Raises ``CryptoError`` when no backend is available (in Pyodide without
    pyca, before the host registered its JS backend).
    """
    global _default
    if _default is None:
        if not _backends:
            raise CryptoError(
                "no crypto backend available: install 'cryptography' or register a backend",
                reason=MlsReason.UNSUPPORTED_OPTION,
            )
        name = available_backends()[0]
        _default = _backends[name][1]()
    return _default


def _register_pyca() -> None:
    try:
        from .pyca import PycaProvider
    except ImportError:  # pyca is not part of this Python (e.g. offline Pyodide)
        return
    register_backend("pyca", PycaProvider, priority=100)


_register_pyca()
