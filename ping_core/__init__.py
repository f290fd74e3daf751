"""Ping: an end-to-end encrypted, multi-device messaging SDK built on MLS (RFC 9420)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
