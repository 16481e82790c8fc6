"""Operator settings, from environment variables (BULLFLOW_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BULLFLOW_")

    redis_url: str | None = Field(
        default=None, description="Default Redis for Flows without spec.connection."
    )
    redis_timeout_seconds: float = 5.0
    max_value_bytes: int = Field(default=4096, ge=64, description="Cut bigger values in status.")
    max_listed_nodes: int = Field(
        default=200, ge=1, description="Above this many jobs, status lists failed/active only."
    )
    max_status_bytes: int = Field(
        default=256 * 1024, ge=16 * 1024, description="Byte budget of one Flow's status."
    )
    max_nodes: int = Field(default=50_000, ge=1, description="Largest flow accepted.")
    patch_interval_seconds: float = Field(
        default=0.25, gt=0, description="Status patches are coalesced over this interval."
    )
    resync_interval_seconds: float = Field(
        default=60.0, gt=0, description="Safety-net re-read of every live flow from Redis."
    )
    event_block_ms: int = 500
    max_backoff_seconds: float = 300.0
    status_retry_max_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Longest wait between retries of a failed status read or write (with few "
        "flows failing; with many, retries spread so that they total about 50 per second).",
    )
