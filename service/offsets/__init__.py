"""Property-fee offsets: points above the baseline deducted from a household's bill."""
