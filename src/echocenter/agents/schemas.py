from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr

from echocenter.agents.commands import MAX_PATTERNS, normalize, pattern_error


def _valid_patterns(patterns: list[str]) -> list[str]:
    cleaned: list[str] = []
    for pattern in patterns:
        problem = pattern_error(pattern)
        if problem is not None:
            raise ValueError(f"command {pattern[:80]!r} {problem}")
        if normalize(pattern) not in cleaned:
            cleaned.append(normalize(pattern))
    return cleaned


CommandPatterns = Annotated[
    list[StrictStr],
    Field(
        max_length=MAX_PATTERNS,
        description="command lines or templates such as `systemctl restart {unit}` (a {name} stands for one "
        "word); empty = any command",
    ),
    AfterValidator(_valid_patterns),
]


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    commands: CommandPatterns = Field(default_factory=list)


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    commands: CommandPatterns


class AgentOut(BaseModel):
    id: int
    name: str
    online: bool
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    commands: list[str] = Field(description="the admin's list; wins over the agent's own when not empty")
    declared_commands: list[str] = Field(description="what the agent declared when it last connected")
    effective_commands: list[str] = Field(description="the list requests are checked against; empty = any")


class AgentCreated(AgentOut):
    token: str = Field(description="shown once: store it now")


class AgentPageOut(BaseModel):
    items: list[AgentOut]
    total: int = Field(description="agents whose name starts with q (all when q is empty)")
    online: int = Field(description="of those, how many are online")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")
