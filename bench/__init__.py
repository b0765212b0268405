"""The ledger's benchmark harness (issue 3): `uv run python -m bench`."""
