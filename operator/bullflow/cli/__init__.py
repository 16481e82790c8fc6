"""Command-line tools for bullflow users (the `kubectl bullflow` plugin)."""
