"""Error types mapped to process exit codes by the CLI."""


class WorkerError(Exception):
    """An error reported as a single line on stderr, without a traceback."""

    exit_code = 1


class UsageError(WorkerError):
    """Bad command line / configuration detected before connecting (exit 2)."""

    exit_code = 2


class StartupError(WorkerError):
    """A runtime failure, e.g. Redis unreachable after the bounded retry (exit 1)."""

    exit_code = 1
