"""Helpers for the browser tests (a module of its own: test files import it)."""

from __future__ import annotations

__all__ = ["BOOT_TIMEOUT_MS", "PAGE_HELPERS", "wait_ready"]

BOOT_TIMEOUT_MS = 90_000


def wait_ready(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until #boot-status says exactly "ready" (fail fast on "failed")."""
    page.wait_for_function(
        "() => ['ready', 'failed'].includes(document.getElementById('boot-status')?.textContent)",
        timeout=BOOT_TIMEOUT_MS,
    )
    status = page.text_content("#boot-status")
    assert status == "ready", f"worker boot: {status}: {page.text_content('#boot-detail')}"


# Helpers the tests evaluate in the page: hex <-> bytes and RPC errors as data.
PAGE_HELPERS = """
window.hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
window.unhex = (s) => new Uint8Array(s.match(/../g)?.map((x) => parseInt(x, 16)) ?? []);
window.tryCall = async (method, params) => {
  try { return { ok: await window.ping.call(method, params) }; }
  catch (e) { return { error: { name: e.name, message: e.message, status: e.status ?? null, code: e.code ?? null } }; }
};
"""
