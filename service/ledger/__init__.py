"""The double-entry core: pure model and planning, the store, and the use cases."""
