"""Connector lifecycle: create, update (credential changes reset verification), verify, enable, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.connectors.schemas import ConnectorOut, ConnectorSettings
from echocenter.connectors.status import StatusView, status_view
from echocenter.db.models import FeishuConnector, InboundMessage, LogLevel
from echocenter.db.types import utcnow
from echocenter.errors import Conflict, ConnectorNotVerified, InvalidRequest

# get_connector and list_connectors are the admin API's too (service.get_connector): re-exported explicitly.
from echocenter.feishu.connector_config import get_connector as get_connector
from echocenter.feishu.connector_config import list_connectors as list_connectors
from echocenter.feishu.connector_config import read_secret
from echocenter.feishu.openapi import FeishuError, request_tenant_token
from echocenter.integration_logs.service import LogAction, record
from echocenter.runtime import Runtime
from echocenter.secretbox import SecretBox, mask, secret_hint

SECRET_FIELDS = ("app_secret", "verification_token", "encrypt_key")
# A change to any of these means the stored verification no longer proves anything.
CREDENTIAL_FIELDS = ("app_id", *SECRET_FIELDS)


def to_out(connector: FeishuConnector, view: StatusView) -> ConnectorOut:
    combined = view.combine(connector.id, connector.last_error)
    secrets: dict[str, Any] = {}
    for name in SECRET_FIELDS:
        has = getattr(connector, f"{name}_enc") is not None
        secrets[f"has_{name}"] = has
        secrets[f"{name}_mask"] = mask(has, getattr(connector, f"{name}_hint"))
    return ConnectorOut(
        id=connector.id,
        connector_name=connector.connector_name,
        app_id=connector.app_id,
        allow_dm=connector.allow_dm,
        allow_group_mention=connector.allow_group_mention,
        mention_required=connector.mention_required,
        allowed_chat_ids=list(connector.allowed_chat_ids),
        user_whitelist=list(connector.user_whitelist),
        approvers=list(connector.approvers),
        prefix_command=connector.prefix_command,
        ignore_bot_messages=connector.ignore_bot_messages,
        rate_limit_per_minute=connector.rate_limit_per_minute,
        callback_enabled=connector.callback_enabled,
        allow_self_approval=connector.allow_self_approval,
        approvals_required=connector.approvals_required,
        escalation_approvers=list(connector.escalation_approvers),
        approval_delivery=connector.approval_delivery,
        streaming_replies=connector.streaming_replies,
        thinking_reaction=connector.thinking_reaction,
        enabled=connector.enabled,
        status=combined.status,
        status_summary=combined.summary,
        instances=combined.instances,
        callback_verified=connector.callback_verified,
        last_verified_at=connector.last_verified_at,
        last_error=combined.last_error,
        last_event_at=connector.last_event_at,
        created_at=connector.created_at,
        updated_at=connector.updated_at,
        **secrets,
    )


async def outs(
    session: AsyncSession, connectors: list[FeishuConnector], *, instance_timeout: float
) -> list[ConnectorOut]:
    """Connectors with their status combined over the live instances (one read for the whole list)."""
    view = await status_view(
        session, timeout=timedelta(seconds=instance_timeout), connector_ids=[c.id for c in connectors]
    )
    return [to_out(c, view) for c in connectors]


def _store_secret(box: SecretBox, connector: FeishuConnector, name: str, value: str | None) -> None:
    value = value or None  # "" clears, like null
    setattr(connector, f"{name}_enc", box.encrypt(value) if value else None)
    setattr(connector, f"{name}_hint", secret_hint(value) if value else None)


@asynccontextmanager
async def _app_id_must_be_unique(session: AsyncSession) -> AsyncIterator[None]:
    try:
        yield
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("another connector already uses this App ID", field="app_id") from exc


async def create_connector(
    session: AsyncSession, *, box: SecretBox, data: ConnectorSettings, actor: str
) -> FeishuConnector:
    values = data.model_dump(exclude=set(SECRET_FIELDS))
    values["app_id"] = values["app_id"] or None
    connector = FeishuConnector(**values)
    for name in SECRET_FIELDS:
        _store_secret(box, connector, name, getattr(data, name))
    session.add(connector)
    async with _app_id_must_be_unique(session):
        await session.flush()  # assigns the id the log entry needs
        record(
            session,
            connector_id=connector.id,
            action=LogAction.CREATE_CONNECTOR,
            actor=actor,
            app_id=connector.app_id,
            fields=sorted(data.model_fields_set),
        )
        await session.commit()
    return connector


async def update_connector(
    session: AsyncSession, *, box: SecretBox, connector: FeishuConnector, data: ConnectorSettings, actor: str
) -> FeishuConnector:
    changed: list[str] = []
    for name in sorted(data.model_fields_set):
        new = getattr(data, name)
        if name in SECRET_FIELDS:
            if (new or None) != read_secret(box, connector, name):
                _store_secret(box, connector, name, new)
                changed.append(name)
        else:
            if name == "app_id":
                new = new or None
            if new != getattr(connector, name):
                setattr(connector, name, new)
                changed.append(name)

    credentials_changed = [name for name in changed if name in CREDENTIAL_FIELDS]
    was_enabled = connector.enabled
    if credentials_changed:
        connector.callback_verified = False
        connector.last_verified_at = None
        connector.enabled = False
    if changed:
        connector.updated_at = utcnow()
        record(
            session,
            connector_id=connector.id,
            action=LogAction.UPDATE_CONNECTOR,
            level=LogLevel.WARN if credentials_changed else LogLevel.INFO,
            actor=actor,
            changed=changed,
            verification_reset=bool(credentials_changed),
        )
    if credentials_changed and was_enabled:
        record(
            session,
            connector_id=connector.id,
            action=LogAction.DISABLE_CONNECTOR,
            level=LogLevel.WARN,
            actor=actor,
            reason="credentials_changed",
        )
    async with _app_id_must_be_unique(session):
        await session.commit()
    return connector


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    message: str
    detail: dict[str, Any]


async def verify_connector(
    session: AsyncSession, *, runtime: Runtime, connector: FeishuConnector, actor: str
) -> Verification:
    """Ask Feishu for a tenant token with the stored credentials; only a code-0 token verifies."""
    app_id, secret = _credentials(runtime.secrets, connector)
    # What the check is made with; the result is stored only if these are still the stored credentials.
    checked = {"app_id": app_id, "app_secret_enc": connector.app_secret_enc}
    await session.commit()  # hold no transaction while Feishu answers (up to FEISHU_HTTP_TIMEOUT)
    result = await _ask_feishu(runtime, app_id, secret)
    if not await _store_verification(session, connector.id, checked, result):
        result = Verification(
            ok=False,
            message="the credentials changed while they were being verified: verify again",
            detail={"error_kind": "stale"},
        )
    record(
        session,
        connector_id=connector.id,
        action=LogAction.VERIFY_CALLBACK,
        level=LogLevel.INFO if result.ok else LogLevel.WARN,
        actor=actor,
        ok=result.ok,
        message=result.message,
        base_url=runtime.settings.feishu_base_url,
        **result.detail,
    )
    await session.commit()
    await session.refresh(connector)
    return result


def _credentials(box: SecretBox, connector: FeishuConnector) -> tuple[str, str]:
    if not connector.app_id:
        raise InvalidRequest("app_id is empty: set the App ID before verifying", field="app_id")
    secret = read_secret(box, connector, "app_secret")
    if not secret:
        raise InvalidRequest("app_secret is not set: set the App Secret before verifying", field="app_secret")
    return connector.app_id, secret


async def _ask_feishu(runtime: Runtime, app_id: str, secret: str) -> Verification:
    settings = runtime.settings
    try:
        token = await request_tenant_token(
            runtime.http,
            base_url=settings.feishu_base_url,
            app_id=app_id,
            app_secret=secret,
            timeout=settings.feishu_http_timeout,
        )
    except FeishuError as exc:
        return Verification(ok=False, message=exc.message, detail=exc.detail())
    return Verification(
        ok=True,
        message="Feishu accepted the App ID and App Secret",
        detail={"token_expires_in": token.expire_seconds},
    )


async def _store_verification(
    session: AsyncSession, connector_id: int, checked: dict[str, Any], result: Verification
) -> bool:
    """Store the outcome if the credentials are still those checked; False when they changed meanwhile.
    A failure also disables the connector."""
    now = utcnow()
    applied = await session.execute(
        update(FeishuConnector)
        .where(
            FeishuConnector.id == connector_id,
            FeishuConnector.app_id == checked["app_id"],
            FeishuConnector.app_secret_enc == checked["app_secret_enc"],
        )
        .values(
            callback_verified=result.ok,
            last_verified_at=now if result.ok else None,
            last_error=None if result.ok else result.message,
            updated_at=now,
            **({} if result.ok else {"enabled": False}),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(applied.rowcount)  # type: ignore[attr-defined]


async def set_enabled(
    session: AsyncSession, *, connector: FeishuConnector, enabled: bool, actor: str
) -> FeishuConnector:
    if enabled and not connector.callback_verified:
        raise ConnectorNotVerified(
            "the connector is not verified: run POST /api/integrations/feishu/{id}/verify-callback "
            "successfully before enabling it".replace("{id}", str(connector.id))
        )
    if connector.enabled != enabled:
        connector.enabled = enabled
        connector.updated_at = utcnow()
        record(
            session,
            connector_id=connector.id,
            action=LogAction.ENABLE_CONNECTOR if enabled else LogAction.DISABLE_CONNECTOR,
            actor=actor,
        )
        await session.commit()
    return connector


async def delete_connector(session: AsyncSession, *, connector: FeishuConnector, actor: str) -> None:
    # Its log entries go with it (ON DELETE CASCADE); the deletion itself is recorded without a connector.
    record(
        session,
        connector_id=None,
        action=LogAction.DELETE_CONNECTOR,
        actor=actor,
        deleted_connector_id=connector.id,
        app_id=connector.app_id,
    )
    await session.delete(connector)
    await session.commit()


class TextSender(Protocol):
    """What sends the test message (feishu.outbound.Outbound): handed in, so this package imports no
    transport. Raises OutboundError (a 409) when Feishu does not take the text within ``wait_seconds``."""

    async def send_text(
        self, connector_id: int, *, chat_id: str, text: str, wait_seconds: float | None = None
    ) -> list[str]: ...


async def _test_chat(session: AsyncSession, connector: FeishuConnector, chat_id: str | None) -> str:
    """``chat_id`` if given, else the first allowed chat, else the chat of the latest inbound message."""
    chat_id = chat_id or (connector.allowed_chat_ids[0] if connector.allowed_chat_ids else None)
    if not chat_id:
        chat_id = await session.scalar(
            select(InboundMessage.chat_id)
            .where(InboundMessage.connector_id == connector.id)
            .order_by(InboundMessage.id.desc())
            .limit(1)
        )
    if not chat_id:
        raise Conflict(
            "no chat to send to: give chat_id, set allowed_chat_ids, or write to the bot first",
            field="chat_id",
        )
    return chat_id


async def send_test_message(
    session: AsyncSession,
    *,
    sender: TextSender,
    connector: FeishuConnector,
    chat_id: str | None,
    text: str,
    wait_seconds: float,
) -> tuple[str, list[str]]:
    """Really send ``text``; the chat it went to and Feishu's message ids."""
    connector_id = connector.id
    chat_id = await _test_chat(session, connector, chat_id)
    await session.close()  # hold no connection while Feishu answers
    return chat_id, await sender.send_text(
        connector_id, chat_id=chat_id, text=text, wait_seconds=wait_seconds
    )
