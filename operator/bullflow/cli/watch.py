"""`kubectl bullflow tree --watch`: the tree drawn again each time the Flow's status changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from .tree import WIDTH, Style, render_tree

TERMINAL_PHASES = ("Completed", "Failed", "Stopped")
# Cursor home, then clear the screen: the next frame is drawn in place of the last one.
CLEAR = "\x1b[H\x1b[2J"


def is_finished(flow: dict[str, Any]) -> bool:
    return (flow.get("status") or {}).get("phase") in TERMINAL_PHASES


def watch_frames(
    flows: Iterable[dict[str, Any]],
    tty: bool,
    forever: bool = False,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    width: int = WIDTH,
    ascii: bool = False,
) -> Iterator[str]:
    """What to write for each version of the Flow in `flows` (the object, then each watch
    event's): a frame per new status. On a TTY the screen is cleared first and the markers are
    glyphs (ASCII ones with `ascii`); else frames are plain text separated by a blank line.
    Ends after the frame of a finished flow unless `forever`. A version whose status did not
    change (an annotation or label write) draws nothing."""
    style: Style = ("ascii" if ascii else "unicode") if tty else "plain"
    drawn: dict[str, Any] | None = None
    for flow in flows:
        status = flow.get("status") or {}
        if drawn is not None and status == drawn:
            continue
        text = render_tree(flow, now=now(), style=style, width=width)
        if tty:
            yield CLEAR + text
        else:
            yield text if drawn is None else "\n" + text
        drawn = status
        if not forever and is_finished(flow):
            return
