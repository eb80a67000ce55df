"""Admin routes for Feishu connectors (the seed's six routes plus list/read/delete)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from sqlalchemy import select

from echocenter.api.deps import BridgeDep, CurrentAdmin, RuntimeDep, SessionDep
from echocenter.connectors import service
from echocenter.connectors.schemas import (
    ConnectorList,
    ConnectorOut,
    ConnectorSettings,
    EnableRequest,
    VerifyResult,
)
from echocenter.db.models import InboundMessage, LogLevel
from echocenter.errors import Conflict
from echocenter.feishu.outbound import Outbound, OutboundError
from echocenter.integration_logs import service as logs
from echocenter.integration_logs.schemas import LogEntryOut, LogPageOut

router = APIRouter(prefix="/api/integrations/feishu", tags=["feishu connectors"])
TEST_MESSAGE_WAIT_SECONDS = 15.0  # an admin waits for the answer; the outbox goes on trying after it

ConnectorId = Annotated[int, Path(ge=1, le=2**31 - 1, description="connector id")]


@router.get("", response_model=ConnectorList, summary="List connectors")
async def list_connectors(_: CurrentAdmin, session: SessionDep) -> ConnectorList:
    return ConnectorList(items=[service.to_out(c) for c in await service.list_connectors(session)])


@router.post(
    "", response_model=ConnectorOut, status_code=status.HTTP_201_CREATED, summary="Create a connector"
)
async def create_connector(
    body: ConnectorSettings, admin: CurrentAdmin, runtime: RuntimeDep, session: SessionDep, bridge: BridgeDep
) -> ConnectorOut:
    connector = await service.create_connector(session, box=runtime.secrets, data=body, actor=admin.username)
    await bridge.connector_changed(connector.id)
    return service.to_out(connector)


@router.get("/{connector_id}", response_model=ConnectorOut, summary="Read a connector")
async def read_connector(connector_id: ConnectorId, _: CurrentAdmin, session: SessionDep) -> ConnectorOut:
    return service.to_out(await service.get_connector(session, connector_id))


@router.patch(
    "/{connector_id}",
    response_model=ConnectorOut,
    summary="Change some settings",
    description="Only the fields sent change. A new app_id, app_secret, verification_token or encrypt_key "
    'resets verification and disables the connector. A secret set to null or "" is cleared.',
)
async def update_connector(
    connector_id: ConnectorId,
    body: ConnectorSettings,
    admin: CurrentAdmin,
    runtime: RuntimeDep,
    session: SessionDep,
    bridge: BridgeDep,
) -> ConnectorOut:
    connector = await service.get_connector(session, connector_id)
    connector = await service.update_connector(
        session, box=runtime.secrets, connector=connector, data=body, actor=admin.username
    )
    await bridge.connector_changed(connector_id)  # new credentials: the connection restarts
    return service.to_out(connector)


@router.delete("/{connector_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a connector")
async def delete_connector(
    connector_id: ConnectorId, admin: CurrentAdmin, session: SessionDep, bridge: BridgeDep
) -> Response:
    connector = await service.get_connector(session, connector_id)
    await service.delete_connector(session, connector=connector, actor=admin.username)
    await bridge.connector_changed(connector_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{connector_id}/verify-callback",
    response_model=VerifyResult,
    summary="Check the credentials against Feishu's auth API",
    description="Calls tenant_access_token/internal. `ok` is true only for code 0 with a token; otherwise "
    "`message` says what went wrong and `detail` carries Feishu's code and msg.",
)
async def verify_connector(
    connector_id: ConnectorId, admin: CurrentAdmin, runtime: RuntimeDep, session: SessionDep
) -> VerifyResult:
    connector = await service.get_connector(session, connector_id)
    result = await service.verify_connector(
        session, runtime=runtime, connector=connector, actor=admin.username
    )
    return VerifyResult(
        ok=result.ok, message=result.message, detail=result.detail, connector=service.to_out(connector)
    )


@router.patch("/{connector_id}/enable", response_model=ConnectorOut, summary="Enable or disable")
async def enable_connector(
    connector_id: ConnectorId, body: EnableRequest, admin: CurrentAdmin, session: SessionDep
) -> ConnectorOut:
    connector = await service.get_connector(session, connector_id)
    connector = await service.set_enabled(
        session, connector=connector, enabled=body.enabled, actor=admin.username
    )
    return service.to_out(connector)


@router.get("/{connector_id}/logs", response_model=LogPageOut, summary="Integration log, newest first")
async def connector_logs(
    connector_id: ConnectorId,
    _: CurrentAdmin,
    session: SessionDep,
    cursor: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,18}$", description="next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    action: Annotated[str | None, Query(max_length=64)] = None,
    level: LogLevel | None = None,
) -> LogPageOut:
    await service.get_connector(session, connector_id)
    page = await logs.page(
        session,
        connector_id=connector_id,
        limit=limit,
        cursor=int(cursor) if cursor else None,
        action=action,
        level=level,
    )
    return LogPageOut(items=[LogEntryOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor)


class TestMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chat_id: StrictStr | None = Field(default=None, max_length=128, description="default: see the route")
    text: StrictStr = Field(default="Hello from EchoCenter 👋", min_length=1, max_length=10_000)


class TestMessageSent(BaseModel):
    chat_id: str
    message_ids: list[str]


@router.post(
    "/{connector_id}/test-message",
    response_model=TestMessageSent,
    summary="Really send a message to Feishu",
    description="To chat_id if given, else the first of allowed_chat_ids, else the chat of the latest "
    "inbound message. Logged as ws_outbound.",
)
async def test_message(
    connector_id: ConnectorId, body: TestMessage, _: CurrentAdmin, session: SessionDep, request: Request
) -> TestMessageSent:
    connector = await service.get_connector(session, connector_id)
    chat_id = body.chat_id or (connector.allowed_chat_ids[0] if connector.allowed_chat_ids else None)
    if not chat_id:
        chat_id = await session.scalar(
            select(InboundMessage.chat_id)
            .where(InboundMessage.connector_id == connector_id)
            .order_by(InboundMessage.id.desc())
            .limit(1)
        )
    if not chat_id:
        raise Conflict(
            "no chat to send to: give chat_id, set allowed_chat_ids, or write to the bot first",
            field="chat_id",
        )
    await session.close()
    outbound: Outbound = request.app.state.outbound
    try:
        ids = await outbound.send_text(
            connector_id, chat_id=chat_id, text=body.text, wait_seconds=TEST_MESSAGE_WAIT_SECONDS
        )
    except OutboundError as exc:
        raise Conflict(f"Feishu refused the message: {exc}") from exc
    return TestMessageSent(chat_id=chat_id, message_ids=ids)
