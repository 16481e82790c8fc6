"""bullflow-worker: a generic Python BullMQ worker process for bullflow."""

__version__ = "0.1.0"
