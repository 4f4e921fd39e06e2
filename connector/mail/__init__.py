"""E-mail: rendering, privacy checks, transports and the outbox worker that delivers.

The outbox's rows and their queries live in :mod:`connector.state.outbox`.
"""
