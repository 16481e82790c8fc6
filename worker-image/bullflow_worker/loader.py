"""Load a ``module:function`` processor and adapt it to bullmq's ``(job, token)`` call."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

from bullflow_worker.errors import UsageError

Processor = Callable[[Any, str], Awaitable[Any]]

_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _positional_arity(func: Callable[..., Any]) -> tuple[int, int, bool]:
    """Return (required positional, total positional, has *args) of ``func``."""
    sig = inspect.signature(func)
    required = total = 0
    varargs = False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            total += 1
            if p.default is p.empty:
                required += 1
        elif p.kind == p.VAR_POSITIONAL:
            varargs = True
        elif p.kind == p.KEYWORD_ONLY and p.default is p.empty:
            raise ValueError(f"keyword-only parameter {p.name!r} has no default")
    return required, total, varargs


def import_processor(spec: str) -> Callable[..., Any]:
    """Import ``module:attr`` (attr may be dotted) and return the callable."""
    if not _SPEC.match(spec):
        raise UsageError(
            f"invalid processor {spec!r}: expected 'module:function' "
            "(e.g. bullflow_worker.processors:echo)"
        )
    module_name, attr_path = spec.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(
                f"cannot load processor {spec!r}: module {module_name!r} not found"
            ) from None
        raise UsageError(
            f"cannot load processor {spec!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    except BaseException as exc:  # any error raised by the module body itself
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise UsageError(
            f"cannot load processor {spec!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(
                f"cannot load processor {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(obj):
        raise UsageError(
            f"cannot load processor {spec!r}: {attr_path!r} is not callable "
            f"(it is a {type(obj).__name__})"
        )
    return obj


def adapt_processor(func: Callable[..., Any], spec: str = "processor") -> Processor:
    """Wrap ``func`` so bullmq can call it as ``await wrapper(job, token)``.

    ``func`` receives the job, plus the lock token when it takes two positional
    arguments. Coroutine functions are awaited on the loop; plain functions run in
    a worker thread (``asyncio.to_thread``) so they never block the event loop.
    """
    try:
        required, total, varargs = _positional_arity(func)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot use processor {spec!r}: unsupported signature: {exc}") from None
    if required > 2:
        raise UsageError(
            f"cannot use processor {spec!r}: it requires {required} positional arguments; "
            "a processor takes (job) or (job, token)"
        )
    if total == 0 and not varargs:
        raise UsageError(
            f"cannot use processor {spec!r}: it takes no arguments; "
            "a processor takes (job) or (job, token)"
        )
    pass_token = varargs or total >= 2
    is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - async callable objects
    )

    async def run(job: Any, token: str) -> Any:
        args = (job, token) if pass_token else (job,)
        if is_async:
            result = await func(*args)
        else:
            result = await asyncio.to_thread(func, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    run.__name__ = getattr(func, "__name__", "processor")
    run.__qualname__ = run.__name__
    return run


def load_processor(spec: str) -> Processor:
    return adapt_processor(import_processor(spec), spec)
