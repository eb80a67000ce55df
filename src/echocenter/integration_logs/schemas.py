from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from echocenter.db.models import LogLevel


class LogEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    connector_id: int | None
    level: LogLevel
    action: str
    detail: dict[str, Any]
    created_at: datetime


class LogPageOut(BaseModel):
    items: list[LogEntryOut]
    next_cursor: str | None
