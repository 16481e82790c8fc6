"""Adapters: all Redis and Kubernetes I/O lives here."""
