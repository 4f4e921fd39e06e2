"""Hooks: the program's rules (registration, consent, notifications, commission),
called by the engine at fixed points of every pass.

The contract they implement lives with its caller, in :mod:`connector.engine.hooks`.
"""
