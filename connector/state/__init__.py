"""The state store: links, base snapshots, cursors, conflicts, runs (sqlmodel)."""

from connector.state.store import StateStore

__all__ = ["StateStore"]
