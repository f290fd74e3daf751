"""HTTP from the worker through JS ``fetch`` (``pyodide.http.pyfetch``).

:func:`request` returns an :class:`HttpResponse` for a 2xx answer and raises
:class:`ping_core.errors.TransportError` for everything else:

- the server answered with an error status: ``status`` is the HTTP status and
  ``code`` the ``code`` field of the server's JSON error body
  ``{"code": ..., "message": ...}`` when there is one;
- no answer (refused connection, timeout, aborted): ``status`` and ``code``
  are ``None``, so ``is_definite_rejection`` is False (the request may have
  been applied).

:func:`error_from_response` is the pure part, shared with every HTTP client
that talks to ping_server (it lives in ``ping_core.transport.wire``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ping_core.cbor import loads_json
from ping_core.errors import InvalidInput, TransportError
from ping_core.transport.wire import error_from_response

__all__ = ["HttpResponse", "request", "error_from_response", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class HttpResponse:
    """A successful (2xx) answer."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self) -> Any:
        """The body parsed as JSON; ``TransportError`` when it is not JSON."""
        try:
            return loads_json(self.body, max_size=len(self.body), what="response body")
        except InvalidInput:
            raise TransportError("response body is not JSON", status=self.status) from None


async def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> HttpResponse:
    """Send one HTTP request with JS ``fetch``; see the module docstring for errors."""
    from js import AbortSignal  # type: ignore[attr-defined]
    from pyodide.http import pyfetch  # type: ignore[import-not-found,unused-ignore]

    kwargs: dict[str, Any] = {"method": method.upper(), "headers": dict(headers or {})}
    if body is not None:
        kwargs["body"] = bytes(body)
    if timeout is not None:
        kwargs["signal"] = AbortSignal.timeout(max(1, int(timeout * 1000)))
    try:
        resp = await pyfetch(url, **kwargs)
        data = await resp.bytes()
    except Exception as exc:  # the fetch boundary: every failure here means "no answer"
        raise TransportError(f"no answer from {method.upper()} {_origin_path(url)}: {_reason(exc)}") from None
    resp_headers = {str(k).lower(): str(v) for k, v in dict(resp.headers).items()}
    status = int(resp.status)
    if not 200 <= status < 300:
        raise error_from_response(status, data, resp_headers.get("content-type", ""))
    return HttpResponse(status=status, body=data, headers=resp_headers)


def _origin_path(url: str) -> str:
    # Never echo query strings into errors: they may carry tokens.
    return url.split("?", 1)[0]


def _reason(exc: BaseException) -> str:
    name = getattr(exc, "name", "") or type(exc).__name__
    return f"{name}: {exc}"
