"""Keys, policy, budgets, rate limits."""
