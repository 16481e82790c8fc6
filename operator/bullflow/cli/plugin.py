"""`kubectl bullflow`: a kubectl plugin for bullflow resources."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("not implemented yet")


if __name__ == "__main__":
    sys.exit(main())
