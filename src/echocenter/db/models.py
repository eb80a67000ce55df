"""ORM models. The schema itself is owned by the Alembic migrations in ``migrations/versions``."""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from echocenter.db.types import UTCDateTime, utcnow

# BIGINT in PostgreSQL, INTEGER in SQLite (so it stays an alias of the rowid and autoincrements).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Role(StrEnum):
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"


# SQLite reuses the highest rowid after a delete unless a table is AUTOINCREMENT; ids named in URLs and tokens
# must never come back for something else (PostgreSQL sequences never reuse them anyway).
NO_ID_REUSE = {"sqlite_autoincrement": True}


def _new_token_stamp() -> str:
    return secrets.token_hex(16)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # Usernames are case-insensitive (credential_rules.normalize_username): Admin and admin are one user.
        Index("uq_users_username_lower", text("lower(username)"), unique=True),
        NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every JWT carries it; drawn anew on logout, revocation, disabling and password change (auth/tokens.py).
    token_stamp: Mapped[str] = mapped_column(String(32), default=_new_token_stamp)


class LoginAttempt(Base):
    """Failed-login counter per username (known or not), shared by every instance through the database."""

    __tablename__ = "login_attempts"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConnectorStatus(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class FeishuConnector(Base):
    __tablename__ = "feishu_connectors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connector_name: Mapped[str] = mapped_column(String(100))
    app_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    # Fernet tokens; the clear values never leave the service.
    app_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    verification_token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    encrypt_key_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Last characters of each secret, kept in clear only when the secret is long enough to spare them.
    app_secret_hint: Mapped[str | None] = mapped_column(String(8), nullable=True)
    verification_token_hint: Mapped[str | None] = mapped_column(String(8), nullable=True)
    encrypt_key_hint: Mapped[str | None] = mapped_column(String(8), nullable=True)

    allow_dm: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_group_mention: Mapped[bool] = mapped_column(Boolean, default=True)
    mention_required: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_chat_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    user_whitelist: Mapped[list[str]] = mapped_column(JSON, default=list)
    approvers: Mapped[list[str]] = mapped_column(JSON, default=list)
    prefix_command: Mapped[str] = mapped_column(String(32), default="")
    ignore_bot_messages: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer, default=30)
    # The HTTP callback answers only for connectors that opt in; the others use the long connection only.
    callback_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # approvals-12: who may decide, how many, where the card goes (approvals/policy.py).
    allow_self_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    escalation_approvers: Mapped[list[str]] = mapped_column(JSON, default=list)
    approval_delivery: Mapped[str] = mapped_column(String(16), default="chat")
    # Streaming replies and a sign of life (0014): CardKit cards that grow as the model writes; the
    # reaction put on a person's message while the Butler thinks ("" = none).
    streaming_replies: Mapped[bool] = mapped_column(Boolean, default=True)
    thinking_reaction: Mapped[str] = mapped_column(String(32), default="OnIt")

    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=ConnectorStatus.DISCONNECTED.value)
    callback_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    last_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LogLevel(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class IntegrationLog(Base):
    __tablename__ = "integration_logs"
    __table_args__ = (
        Index("ix_integration_logs_connector_id_id", "connector_id", "id"),
        Index("ix_integration_logs_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    connector_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"), nullable=True
    )
    level: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallbackReplay(Base):
    """A signed HTTP callback already accepted, kept for the timestamp window so a replay is refused."""

    __tablename__ = "callback_replays"
    __table_args__ = (Index("ix_callback_replays_seen_at", "seen_at"),)

    connector_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"), primary_key=True
    )
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InboundStatus(StrEnum):
    """The inbox states: received → routed → answered, or filtered / failed (with a reason)."""

    RECEIVED = "received"  # claimed (durable, acked), not yet taken by the Butler
    ROUTED = "routed"  # the Butler holds the turn; its answer is not yet sent
    ANSWERED = "answered"
    FILTERED = "filtered"
    FAILED = "failed"


UNFINISHED = (InboundStatus.RECEIVED.value, InboundStatus.ROUTED.value)


class InboundMessage(Base):
    """One row per Feishu message seen per connector: the unique constraint is the de-duplication."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("connector_id", "message_id", name="uq_inbound_messages_connector_message"),
        Index("ix_inbound_messages_rate", "connector_id", "sender_open_id", "received_at"),
        Index("ix_inbound_messages_received_at", "received_at"),
        Index("ix_inbound_messages_unfinished", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64))
    sender_open_id: Mapped[str] = mapped_column(String(64), default="")
    chat_id: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default=InboundStatus.RECEIVED.value)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The durable inbox (migration 0007): what the Butler needs to answer, and who works on it until when.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class InboundRateWindow(Base):
    """Messages per sender in the current one-minute window, counted atomically (exact across instances)."""

    __tablename__ = "inbound_rate_windows"

    connector_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"), primary_key=True
    )
    sender_open_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    count: Mapped[int] = mapped_column(Integer)


class Agent(Base):
    """A machine that runs approved commands. Its token is shown once; only its SHA-256 is kept."""

    __tablename__ = "agents"
    __table_args__ = NO_ID_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Command patterns (agents/commands.py): the admin's list wins when set; else what the agent declared
    # when it connected; both empty = any command.
    commands: Mapped[list[str]] = mapped_column(JSON, default=list)
    declared_commands: Mapped[list[str]] = mapped_column(JSON, default=list)


class Approval(Base):
    """A command waiting for, or past, a person's decision. The state machine is in approvals/states.py."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status_expires", "status", "expires_at"), NO_ID_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connector_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("feishu_connectors.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(16))
    agent_name: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str] = mapped_column(String(64), unique=True)  # correlates the agent's result
    requested_by_open_id: Mapped[str] = mapped_column(String(64), default="")
    requested_by_name: Mapped[str] = mapped_column(String(128), default="")
    chat_id: Mapped[str] = mapped_column(String(64), default="")
    source_message_id: Mapped[str] = mapped_column(String(64), default="")
    card_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The instance that took the command to its agent (claimed once, so it is sent once).
    dispatched_to: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # approvals-12: the connector's quorum when it was asked; reminder and escalation done (once, durably).
    approvals_required: Mapped[int] = mapped_column(Integer, default=1)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApprovalVote(Base):
    """One person's vote on one approval: the unique key makes the same person twice count once."""

    __tablename__ = "approval_votes"
    __table_args__ = (UniqueConstraint("approval_id", "voter_open_id", name="uq_approval_votes_voter"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    approval_id: Mapped[int] = mapped_column(Integer, ForeignKey("approvals.id", ondelete="CASCADE"))
    voter_open_id: Mapped[str] = mapped_column(String(128))
    voter_name: Mapped[str] = mapped_column(String(128), default="")
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApprovalCardCopy(Base):
    """Every message that shows an approval's card (the chat's, each DM, each reminder): a click on any of
    them is a click on this approval, and each is updated when it is decided."""

    __tablename__ = "approval_card_copies"
    __table_args__ = (
        UniqueConstraint("message_id", name="uq_approval_card_copies_message"),
        Index("ix_approval_card_copies_approval", "approval_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    approval_id: Mapped[int] = mapped_column(Integer, ForeignKey("approvals.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64))
    audience: Mapped[str] = mapped_column(String(160))  # chat:<chat_id> | dm:<open_id>
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApprovalEvent(Base):
    """The append-only, hash-chained timeline of every approval (approvals/timeline.py)."""

    __tablename__ = "approval_events"
    __table_args__ = (
        UniqueConstraint("prev_hash", name="uq_approval_events_prev_hash"),
        Index("ix_approval_events_approval", "approval_id", "id"),
        Index("ix_approval_events_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    approval_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128), default="")
    actor_name: Mapped[str] = mapped_column(String(128), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class Conversation(Base):
    """One per Feishu user and chat (and thread: two threads in one chat are two conversations)."""

    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint(
            "connector_id", "chat_id", "open_id", "thread_id", name="uq_conversations_who_where_thread"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"))
    chat_id: Mapped[str] = mapped_column(String(64))
    open_id: Mapped[str] = mapped_column(String(64))
    thread_id: Mapped[str] = mapped_column(String(64), default="")  # "" outside a thread (0014)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StreamedReply(Base):
    """The CardKit card a message's answer streams into: a re-drive reuses it, never posting a second."""

    __tablename__ = "streamed_replies"
    __table_args__ = (UniqueConstraint("connector_id", "message_id", name="uq_streamed_replies_message"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(64))
    card_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConversationTurn(Base):
    __tablename__ = "conversation_turns"
    __table_args__ = (
        Index("ix_conversation_turns_conversation_id_id", "conversation_id", "id"),
        Index("uq_conversation_turns_key", "conversation_id", "turn_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(Integer, ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))  # user | assistant
    content: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "user:<message_id>", "reply:<message_id>", …: a re-driven message never adds a turn twice (0007).
    turn_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The agent loop (0013): an assistant turn's tool calls (OpenAI shape), a tool turn's call id.
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    tool_call_id: Mapped[str | None] = mapped_column(String(100), nullable=True)


class ButlerLoop(Base):
    """A request the LLM brain is working on: driven by whoever holds its lease, waiting on approvals in
    between (a durable continuation; see butler/loop.py)."""

    __tablename__ = "butler_loops"
    __table_args__ = (
        UniqueConstraint("connector_id", "source_message_id", name="uq_butler_loops_message"),
        Index("ix_butler_loops_status_lease", "status", "lease_until"),
        NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(Integer, ForeignKey("conversations.id", ondelete="CASCADE"))
    connector_id: Mapped[int] = mapped_column(Integer)
    source_message_id: Mapped[str] = mapped_column(String(64))
    message: Mapped[dict[str, Any]] = mapped_column(JSON)  # the InboundMessage, to reply to it
    status: Mapped[str] = mapped_column(String(16))  # RUNNING | WAITING | DONE
    steps: Mapped[int] = mapped_column(Integer, default=0)  # tool calls made so far
    model_turns: Mapped[int] = mapped_column(Integer, default=0)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ButlerToolCall(Base):
    """One tool call of one model turn; ``result`` is what goes back to the model (set once)."""

    __tablename__ = "butler_tool_calls"
    __table_args__ = (
        UniqueConstraint("loop_id", "model_turn", "call_id", name="uq_butler_tool_calls_call"),
        Index("ix_butler_tool_calls_approval_id", "approval_id"),
        NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    loop_id: Mapped[int] = mapped_column(Integer, ForeignKey("butler_loops.id", ondelete="CASCADE"))
    model_turn: Mapped[int] = mapped_column(Integer)
    call_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(64))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    approval_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- several instances ------------------------------------------------------------------------------
class Instance(Base):
    """A running EchoCenter; one whose heartbeat is older than INSTANCE_TIMEOUT_SECONDS counts as gone."""

    __tablename__ = "instances"

    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConnectorInstanceStatus(Base):
    """One instance's long-connection state for one connector (each instance writes only its own row)."""

    __tablename__ = "connector_instance_status"

    connector_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"), primary_key=True
    )
    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AgentPresence(Base):
    """Which instance holds an agent's socket; written in batches by the holding instance."""

    __tablename__ = "agent_presence"
    __table_args__ = (Index("ix_agent_presence_instance_id", "instance_id"),)

    agent_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    instance_id: Mapped[str] = mapped_column(String(64))
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # a permanent Feishu error (logged with Feishu's code and message)


class OutboxMessage(Base):
    """A reply, card or card update, written before it goes to Feishu (feishu/outbox.py sends it).

    Rows of one ``lane`` (a chat, or the message a PATCH targets) go out in id order, one at a time.
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_pending", "status", "connector_id", "lane", "id"),
        UniqueConstraint("connector_id", "uuid", name="uq_outbox_messages_uuid"),
        NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    connector_id: Mapped[int] = mapped_column(Integer, ForeignKey("feishu_connectors.id", ondelete="CASCADE"))
    lane: Mapped[str] = mapped_column(String(160))  # "chat:<chat_id>" or "message:<message_id>"
    kind: Mapped[str] = mapped_column(String(16))  # text | card | card_update
    chat_id: Mapped[str] = mapped_column(String(128), default="")
    target_message_id: Mapped[str] = mapped_column(String(128), default="")  # reply_to, or the card to PATCH
    msg_type: Mapped[str] = mapped_column(String(16), default="")
    # chat_id names a chat; open_id a person (an approval card sent as a DM).
    receive_id_type: Mapped[str] = mapped_column(String(16), default="chat_id", server_default="chat_id")
    reply_in_thread: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    content: Mapped[str] = mapped_column(Text)  # the JSON string Feishu gets as ``content``
    uuid: Mapped[str] = mapped_column(String(50))  # Feishu's idempotency key (PATCH: ours only)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxPacing(Base):
    """Shared send pacing (PostgreSQL, several instances): per quota key, the theoretical arrival time of
    the next request (GCRA), so every instance draws from one budget."""

    __tablename__ = "outbox_pacing"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tat: Mapped[float] = mapped_column(Float)  # epoch seconds
