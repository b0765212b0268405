"""HTTP controllers: decode, authorise, call a use case, encode. No SQL, no rules."""
