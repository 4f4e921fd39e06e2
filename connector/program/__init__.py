"""The partner program's rules, pure (no SQL, no CRM calls): registration decisions
(``decide.py``), registrable domains, countries, consent regions and commission maths.

The hooks (:mod:`connector.hooks`) apply them on every pass; their records are in
:mod:`connector.state.registry`."""
