"""Webhooks (SPEC section 12): endpoints, the outbox's events and their delivery."""
