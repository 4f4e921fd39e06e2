"""The partner program's rules: domains, registrations, ownership, commission, tiers."""
