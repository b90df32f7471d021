"""Credits: the ledger (1 credit = 1 GPU-second), plans and their limits."""
