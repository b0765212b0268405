"""Consent (SPEC section 10): residents approve what is spent from their points."""
