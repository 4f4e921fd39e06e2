"""Test support shipped with the package: the adapter conformance kit, clocks,
misbehaving mail servers and fault injectors, used by ``tests/`` and ``scripts/``.

Nothing here is imported by the product; dev-only libraries (aiosmtpd, httpx) are
imported inside the functions that need them, so ``import connector`` never does.
"""
