"""The sync engine: detect → reconcile (pure) → hooks → apply → commit."""
