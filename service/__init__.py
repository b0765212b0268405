"""Community points ledger: a double-entry ledger of residents' points and time credits."""
