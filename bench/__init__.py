"""bullflow benchmarks (`make bench`, `make bench-smoke`): see bullflow_bench."""
