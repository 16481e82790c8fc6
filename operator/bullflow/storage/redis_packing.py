"""hiredis's C command packer on redis-py's asyncio connections."""

from __future__ import annotations

from typing import Any

from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE


class _HiredisPacking:
    """redis-py packs commands in Python on its asyncio connections, with hiredis's C packer on
    its sync ones (HiredisRespSerializer, when hiredis is installed): the same bytes
    (test_redis_packing), packed several times faster, which counts on a big submission's
    pipeline (bench/)."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        return self._packer.pack(*args)


_packing_classes: dict[type, type] = {}


def with_hiredis_packing(connection_class: type) -> type:
    """`connection_class` (TCP, TLS or Unix socket, as redis-py chose from the URL) packing its
    commands with hiredis; unchanged if hiredis is missing."""
    if not HIREDIS_AVAILABLE or issubclass(connection_class, _HiredisPacking):
        return connection_class
    if connection_class not in _packing_classes:
        name = f"HiredisPacking{connection_class.__name__}"
        _packing_classes[connection_class] = type(name, (_HiredisPacking, connection_class), {})
    return _packing_classes[connection_class]
