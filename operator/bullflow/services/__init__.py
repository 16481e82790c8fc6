"""Domain logic: pure functions, tested without a cluster or Redis."""
