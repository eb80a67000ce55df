from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class AgentOut(BaseModel):
    id: int
    name: str
    online: bool
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None


class AgentCreated(AgentOut):
    token: str = Field(description="shown once: store it now")
