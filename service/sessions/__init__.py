"""Sign-in links and web-app sessions (SPEC section 14)."""
