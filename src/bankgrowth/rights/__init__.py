"""Rights (权益): catalog, budgets, the ledger, the savings card, redemption and settlement."""
