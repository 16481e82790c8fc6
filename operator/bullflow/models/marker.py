"""The submission marker: the Redis key written in the same MULTI/EXEC as a flow's jobs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SubmissionMarker(BaseModel):
    """Proof that a flow's jobs were added, which Flow object added them and when; for a flow
    with an idempotencyKey, also how it ended (its final status), so that a Flow re-created
    with the same key is recognised and not run again. Its JSON keys are the stored format."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    namespace: str = ""
    name: str = ""
    flow_uid: str = Field(default="", alias="uid")  # the Flow object's uid (not the job token)
    submitted_at: str = Field(default="", alias="submittedAt")
    jobs: int = 0
    final_status: dict[str, Any] | None = Field(default=None, alias="status")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)
