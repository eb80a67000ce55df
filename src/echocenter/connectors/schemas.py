from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from echocenter.db.models import ConnectorStatus


def _unique_stripped(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if not value.strip():
            raise ValueError("entries must not be blank")
        seen.setdefault(value.strip(), None)
    return list(seen)


FeishuId = Annotated[StrictStr, Field(min_length=1, max_length=128)]
IdList = Annotated[list[FeishuId], Field(max_length=1000), AfterValidator(_unique_stripped)]
Secret = Annotated[StrictStr, Field(max_length=256)]


class ConnectorSettings(BaseModel):
    """What an admin may set. The same model serves create (defaults apply) and PATCH (only the fields sent).

    enabled, status, callback_verified and last_verified_at are server-managed: sending them is an error.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    connector_name: StrictStr = Field(default="Feishu", min_length=1, max_length=100)
    app_id: StrictStr | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_\-]*$")
    app_secret: Secret | None = None
    verification_token: Secret | None = None
    encrypt_key: Secret | None = None
    allow_dm: StrictBool = True
    allow_group_mention: StrictBool = True
    mention_required: StrictBool = True
    allowed_chat_ids: IdList = Field(default_factory=list, description="empty: every chat")
    user_whitelist: IdList = Field(default_factory=list, description="open_ids or user_ids; empty: everyone")
    approvers: IdList = Field(default_factory=list, description="open_ids allowed to approve commands")
    prefix_command: StrictStr = Field(default="", max_length=32, description="e.g. /bot; empty: none")
    ignore_bot_messages: StrictBool = True
    rate_limit_per_minute: StrictInt = Field(default=30, ge=1, le=10_000, description="per sender")
    callback_enabled: StrictBool = Field(
        default=False, description="answer Feishu's HTTP callback; off: long connection only"
    )
    streaming_replies: StrictBool = Field(
        default=True, description="LLM answers grow in a CardKit card; off: one text reply"
    )
    thinking_reaction: StrictStr = Field(
        default="OnIt",
        max_length=32,
        pattern=r"^[A-Za-z0-9_]*$",
        description="emoji_type put on a message while the Butler thinks; empty: none",
    )


class EnableRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool


class ConnectorInstanceOut(BaseModel):
    """One live instance's long connection for this connector."""

    instance_id: str
    state: ConnectorStatus
    last_error: str | None
    updated_at: datetime


class ConnectorOut(BaseModel):
    id: int
    connector_name: str
    app_id: str | None
    has_app_secret: bool
    app_secret_mask: str | None
    has_verification_token: bool
    verification_token_mask: str | None
    has_encrypt_key: bool
    encrypt_key_mask: str | None
    allow_dm: bool
    allow_group_mention: bool
    mention_required: bool
    allowed_chat_ids: list[str]
    user_whitelist: list[str]
    approvers: list[str]
    prefix_command: str
    ignore_bot_messages: bool
    rate_limit_per_minute: int
    callback_enabled: bool
    streaming_replies: bool
    thinking_reaction: str
    enabled: bool
    status: ConnectorStatus  # the best state across live instances
    status_summary: str  # e.g. "connected on 3 of 3 instances"
    instances: list[ConnectorInstanceOut]
    callback_verified: bool
    last_verified_at: datetime | None
    last_error: str | None
    last_event_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ConnectorList(BaseModel):
    items: list[ConnectorOut]


class VerifyResult(BaseModel):
    ok: bool
    message: str
    detail: dict[str, Any]
    connector: ConnectorOut
