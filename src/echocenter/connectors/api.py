"""Admin routes for Feishu connectors (the seed's six routes plus list/read/delete)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.convertors import StringConvertor, register_url_convertor

from echocenter.api.deps import RuntimeDep, SessionDep
from echocenter.api.error_docs import errors
from echocenter.auth.deps import CurrentAdmin
from echocenter.connectors import service
from echocenter.connectors.schemas import (
    ConnectorList,
    ConnectorOut,
    ConnectorSettings,
    DoctorCheckOut,
    DoctorRequest,
    DoctorResult,
    EnableRequest,
    TestMessage,
    TestMessageSent,
    VerifyResult,
)
from echocenter.db.models import FeishuConnector, LogLevel
from echocenter.errors import InvalidRequest
from echocenter.feishu.bridge import FeishuBridge
from echocenter.feishu.deps import BridgeDep, OutboundDep
from echocenter.feishu.doctor import diagnose_connector
from echocenter.integration_logs import service as logs
from echocenter.integration_logs.schemas import LogEntryOut, LogPageOut
from echocenter.runtime import Runtime

MAX_LOG_ID = 2**63 - 1  # BIGINT

router = APIRouter(prefix="/api/integrations/feishu", tags=["feishu connectors"])
TEST_MESSAGE_WAIT_SECONDS = 15.0  # an admin waits for the answer; the outbox goes on trying after it

ConnectorId = Annotated[int, Path(ge=1, le=2**31 - 1, description="connector id")]


async def _outs(
    session: AsyncSession, runtime: Runtime, connectors: list[FeishuConnector]
) -> list[ConnectorOut]:
    return await service.outs(session, connectors, instance_timeout=runtime.settings.instance_timeout_seconds)


async def _out(session: AsyncSession, runtime: Runtime, connector: FeishuConnector) -> ConnectorOut:
    return (await _outs(session, runtime, [connector]))[0]


async def _announce(session: AsyncSession, bridge: FeishuBridge, connector_id: int) -> None:
    # End the request's transaction first: the bridge reads with its own session (SQLite has one connection).
    await session.commit()
    await bridge.announce(connector_id)


class _ConnectorIdSegment(StringConvertor):
    """Any path segment but ``callback``: ``PATCH /callback`` is then a 405 from the callback route, not a 422
    from reading "callback" as an id; a malformed id (``abc``) still gets its 422."""

    regex = "(?!callback(?![^/]))[^/]+"


register_url_convertor("connector_id", _ConnectorIdSegment())


@router.get("", response_model=ConnectorList, summary="List connectors")
async def list_connectors(_: CurrentAdmin, session: SessionDep, runtime: RuntimeDep) -> ConnectorList:
    return ConnectorList(items=await _outs(session, runtime, await service.list_connectors(session)))


@router.post(
    "",
    response_model=ConnectorOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a connector",
    responses=errors(409),
)
async def create_connector(
    body: ConnectorSettings, admin: CurrentAdmin, runtime: RuntimeDep, session: SessionDep, bridge: BridgeDep
) -> ConnectorOut:
    connector = await service.create_connector(session, box=runtime.secrets, data=body, actor=admin.username)
    await _announce(session, bridge, connector.id)
    return await _out(session, runtime, connector)


@router.get("/{connector_id:connector_id}", response_model=ConnectorOut, summary="Read a connector")
async def read_connector(
    connector_id: ConnectorId, _: CurrentAdmin, session: SessionDep, runtime: RuntimeDep
) -> ConnectorOut:
    return await _out(session, runtime, await service.get_connector(session, connector_id))


@router.patch(
    "/{connector_id:connector_id}",
    response_model=ConnectorOut,
    summary="Change some settings",
    responses=errors(409),
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
    await _announce(session, bridge, connector_id)  # new credentials: every instance's connection restarts
    return await _out(session, runtime, connector)


@router.delete(
    "/{connector_id:connector_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a connector"
)
async def delete_connector(
    connector_id: ConnectorId, admin: CurrentAdmin, session: SessionDep, bridge: BridgeDep
) -> Response:
    connector = await service.get_connector(session, connector_id)
    await service.delete_connector(session, connector=connector, actor=admin.username)
    await _announce(session, bridge, connector_id)  # every instance closes its connection
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{connector_id:connector_id}/verify-callback",
    response_model=VerifyResult,
    summary="Check the credentials against Feishu's auth API",
    responses=errors(400),
    description="Calls tenant_access_token/internal. `ok` is true only for code 0 with a token; otherwise "
    "`message` says what went wrong and `detail` carries Feishu's code and msg.",
)
async def verify_connector(
    connector_id: ConnectorId,
    admin: CurrentAdmin,
    runtime: RuntimeDep,
    session: SessionDep,
    bridge: BridgeDep,
) -> VerifyResult:
    connector = await service.get_connector(session, connector_id)
    result = await service.verify_connector(
        session, runtime=runtime, connector=connector, actor=admin.username
    )
    await _announce(session, bridge, connector_id)
    return VerifyResult(
        ok=result.ok,
        message=result.message,
        detail=result.detail,
        connector=await _out(session, runtime, connector),
    )


@router.patch(
    "/{connector_id:connector_id}/enable",
    response_model=ConnectorOut,
    summary="Enable or disable",
    responses=errors(409),
)
async def enable_connector(
    connector_id: ConnectorId,
    body: EnableRequest,
    admin: CurrentAdmin,
    session: SessionDep,
    runtime: RuntimeDep,
    bridge: BridgeDep,
) -> ConnectorOut:
    connector = await service.get_connector(session, connector_id)
    connector = await service.set_enabled(
        session, connector=connector, enabled=body.enabled, actor=admin.username
    )
    await _announce(session, bridge, connector_id)
    return await _out(session, runtime, connector)


@router.get(
    "/{connector_id:connector_id}/logs", response_model=LogPageOut, summary="Integration log, newest first"
)
async def connector_logs(
    connector_id: ConnectorId,
    _: CurrentAdmin,
    session: SessionDep,
    cursor: Annotated[str | None, Query(pattern=r"^[1-9][0-9]{0,18}$", description="next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    action: Annotated[str | None, Query(max_length=64)] = None,
    level: LogLevel | None = None,
) -> LogPageOut:
    # 19 digits can exceed BIGINT (and SQLite's int64): refuse rather than overflow into a 500.
    if cursor and int(cursor) > MAX_LOG_ID:
        raise InvalidRequest("cursor is out of range", field="cursor")
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


@router.post(
    "/{connector_id:connector_id}/test-message",
    response_model=TestMessageSent,
    summary="Really send a message to Feishu",
    responses=errors(409),
    description="To chat_id if given, else the first of allowed_chat_ids, else the chat of the latest "
    "inbound message. Logged as ws_outbound.",
)
async def test_message(
    connector_id: ConnectorId, body: TestMessage, _: CurrentAdmin, session: SessionDep, outbound: OutboundDep
) -> TestMessageSent:
    connector = await service.get_connector(session, connector_id)
    chat_id, ids = await service.send_test_message(
        session,
        sender=outbound,
        connector=connector,
        chat_id=body.chat_id,
        text=body.text,
        wait_seconds=TEST_MESSAGE_WAIT_SECONDS,
    )
    return TestMessageSent(chat_id=chat_id, message_ids=ids)


@router.post(
    "/{connector_id:connector_id}/doctor",
    response_model=DoctorResult,
    summary="Check the connector against Feishu (what `echocenter doctor` does)",
    description="Credentials, the Bot capability, long-connection discovery (the socket is not opened), and "
    "with `chat_id` a real test message. Nothing is stored; `ok` is false when any check failed.",
)
async def doctor(
    connector_id: ConnectorId,
    _: CurrentAdmin,
    runtime: RuntimeDep,
    session: SessionDep,
    body: DoctorRequest | None = None,
) -> DoctorResult:
    connector = await service.get_connector(session, connector_id)
    await session.close()  # hold no connection while Feishu answers
    checks = await diagnose_connector(
        runtime.http,
        settings=runtime.settings,
        secrets=runtime.secrets,
        connector=connector,
        chat_id=body.chat_id if body else None,
    )
    return DoctorResult(
        ok=all(c.status != "failed" for c in checks),
        checks=[DoctorCheckOut(**c.as_dict()) for c in checks],
    )
