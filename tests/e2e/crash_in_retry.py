"""The operator with a crash injected for the retry crash-safety test: SIGKILLed right after
its first retry transaction (jobs moved back and the token in the marker, no status written
yet), once (the file given as the first argument records that it happened). The hook lives
here, not in the product.

Usage: python -m tests.e2e.crash_in_retry MARKER_FILE [bullflow-operator arguments...]
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from bullflow.__main__ import main
from bullflow.controllers import flow_operations
from bullflow.storage.redis_retry import Writes


def install(marker: Path) -> None:
    transact = flow_operations.transact

    async def transact_then_crash(*args: Any, **kwargs: Any) -> Any:
        result = await transact(*args, **kwargs)
        if isinstance(result, Writes) and result.operations.retry and not marker.exists():
            marker.write_text("crashed after the retry's transaction\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    flow_operations.transact = transact_then_crash  # type: ignore[assignment]


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
