"""The operator with a crash injected for the crash-safety test: SIGKILLed right after its first
Redis submission (jobs and marker written, no status yet), once (the file given as the first
argument records that it happened). The hook lives here, not in the product.

Usage: python -m tests.e2e.crash_after_submit MARKER_FILE [bullflow-operator arguments...]
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from bullflow.__main__ import main
from bullflow.storage.redis_jobs import BullRedis


def install(marker: Path) -> None:
    submit = BullRedis.submit

    async def submit_then_crash(self: BullRedis, *args: Any, **kwargs: Any) -> Any:
        result = await submit(self, *args, **kwargs)
        if result is not None and not marker.exists():
            marker.write_text("crashed after the Redis write\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    BullRedis.submit = submit_then_crash  # type: ignore[method-assign]


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
