"""Ping's reference delivery service (first cut: web client + health endpoint)."""

from __future__ import annotations

from .app import ApiError, create_app, error_response

__all__ = ["create_app", "ApiError", "error_response"]
