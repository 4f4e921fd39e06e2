"""Hooks: the program's rules (registration, consent, notifications, commission),
called by the engine at fixed points of every pass.

They plan, they do not write: each hands its effects (decisions, ownership writes,
commissions, e-mails) to the engine, which carries them out or, in a dry run, lists
them (:mod:`connector.engine.effects`). The contract they implement lives with its
caller, in :mod:`connector.engine.hooks`.
"""
