"""Supply-chain rules, applied when answering: cooldown, cutoff, block and allow rules."""
