"""Hooks: the program's rules (registration, consent, notifications, commission),
called by the engine at fixed points of every pass."""

from connector.hooks.base import Hook, PassContext

__all__ = ["Hook", "PassContext"]
