"""Controllers: idempotent reconcile logic joining the services to the storage adapters."""
