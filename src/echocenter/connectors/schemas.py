from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from echocenter.db.models import ConnectorStatus


def _unique_stripped(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if not value.strip():
            raise ValueError("entries must not be blank")
        seen.setdefault(value.strip(), None)
    return list(seen)


def _integral_float_to_int(value: Any) -> Any:
    # JSON Schema's "integer" includes 153.0 (and some clients send whole numbers so); 153.5 and "153" stay
    # refused by the strict int below.
    return int(value) if isinstance(value, float) and value.is_integer() else value


IntegralInt = Annotated[StrictInt, BeforeValidator(_integral_float_to_int)]
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
    rate_limit_per_minute: IntegralInt = Field(default=30, ge=1, le=10_000, description="per sender")
    callback_enabled: StrictBool = Field(
        default=False, description="answer Feishu's HTTP callback; off: long connection only"
    )
    # approvals-12: four-eyes, quorum, escalation and where approval cards go.
    allow_self_approval: StrictBool = Field(
        default=False, description="the person who asked for a command may approve it too"
    )
    approvals_required: StrictInt = Field(default=1, ge=1, le=5, description="distinct approvers needed")
    escalation_approvers: IdList = Field(
        default_factory=list, description="open_ids added as approvers after APPROVAL_ESCALATE_AFTER"
    )
    approval_delivery: Literal["chat", "approvers", "both"] = Field(
        default="chat", description="chat: the asking chat; approvers: a DM to each; both"
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
    allow_self_approval: bool
    approvals_required: int
    escalation_approvers: list[str]
    approval_delivery: str
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


class TestMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chat_id: StrictStr | None = Field(default=None, max_length=128, description="default: see the route")
    text: StrictStr = Field(default="Hello from EchoCenter 👋", min_length=1, max_length=10_000)


class TestMessageSent(BaseModel):
    chat_id: str
    message_ids: list[str]


class DoctorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chat_id: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="also send a real test message to this chat_id (oc_…) or open_id (ou_…)",
    )


class DoctorCheckOut(BaseModel):
    name: str = Field(description="connector | credentials | bot | long_connection | test_message")
    status: str = Field(description="ok | failed | skipped")
    summary: str
    feishu_code: int | None
    feishu_msg: str | None
    http_status: int | None
    fix: str | None = Field(description="what to change, in plain words")


class DoctorResult(BaseModel):
    ok: bool
    checks: list[DoctorCheckOut]
