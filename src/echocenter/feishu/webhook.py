"""HTTP callback mode: Feishu POSTs events here instead of the long connection.

Only translates: decrypt and authenticate the request, answer url_verification, then hand the event to the
bridge's one dispatch (messages after answering, card callbacks inside the answer). A bad payload is a 4xx,
never a 500.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from echocenter.api.deps import RuntimeDep, SessionDep
from echocenter.api.error_docs import errors
from echocenter.connectors.service import get_connector, list_connectors, read_secret
from echocenter.db.models import FeishuConnector, LogLevel
from echocenter.errors import EchoCenterError, InvalidRequest, NotAuthenticated, NotFound
from echocenter.feishu import callback_crypto, callback_docs
from echocenter.feishu.bridge import FeishuBridge
from echocenter.feishu.events import CardActionEvent, EventParseError, parse_event
from echocenter.feishu.longconn.client import CARD_TIMEOUT_TOAST
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.runtime import Runtime

router = APIRouter(prefix="/api/integrations/feishu", tags=["feishu callback"])


async def _reject(runtime: Runtime, connector_id: int, exc: EchoCenterError) -> EchoCenterError:
    await record_now(
        runtime.sessions,
        connector_id=connector_id,
        action=LogAction.CALLBACK_REJECTED,
        level=LogLevel.WARN,
        status=exc.status_code,
        reason=exc.message,
    )
    return exc


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the body is not a JSON object")
    return body


async def _open(request: Request, raw: bytes, connector: FeishuConnector, runtime: Runtime) -> dict[str, Any]:
    """The plaintext event: signature checked and body decrypted when the connector has an encrypt key."""
    body = _json(raw)
    encrypt_key = read_secret(runtime.secrets, connector, "encrypt_key")
    if not encrypt_key:
        return body
    if not isinstance(body.get("encrypt"), str):
        raise await _reject(
            runtime, connector.id, InvalidRequest("an encrypt key is set: the body must be encrypted")
        )
    try:
        plain = _json(callback_crypto.decrypt(body["encrypt"], encrypt_key))
    except (callback_crypto.CallbackCryptoError, InvalidRequest) as exc:
        raise await _reject(runtime, connector.id, InvalidRequest(f"cannot decrypt the body: {exc}")) from exc
    signature = request.headers.get("x-lark-signature")
    if plain.get("type") == "url_verification" and signature is None:
        return plain  # Feishu signs events; the challenge is proven by decrypting it
    timestamp = request.headers.get("x-lark-request-timestamp", "")
    nonce = request.headers.get("x-lark-request-nonce", "")
    if not signature or not timestamp.isdigit():
        raise await _reject(runtime, connector.id, NotAuthenticated("missing X-Lark-Signature or timestamp"))
    if abs(time.time() - int(timestamp)) > runtime.settings.feishu_callback_max_skew_seconds:
        raise await _reject(
            runtime, connector.id, NotAuthenticated("stale X-Lark-Request-Timestamp: replay refused")
        )
    if not callback_crypto.signature_matches(signature, timestamp, nonce, encrypt_key, raw):
        raise await _reject(runtime, connector.id, NotAuthenticated("X-Lark-Signature does not match"))
    return plain


def _token_of(body: dict[str, Any]) -> str:
    header = body.get("header")
    token = header.get("token") if isinstance(header, dict) else body.get("token")  # v2, else v1
    return token if isinstance(token, str) else ""


async def _handle(request: Request, connector: FeishuConnector, raw: bytes, runtime: Runtime) -> JSONResponse:
    expected = read_secret(runtime.secrets, connector, "verification_token")
    if not expected and connector.encrypt_key_enc is None:
        # Without either, anyone who knows the URL could speak for Feishu: refuse rather than trust.
        raise await _reject(
            runtime,
            connector.id,
            NotAuthenticated("callback mode needs a verification token or an encrypt key on the connector"),
        )
    body = await _open(request, raw, connector, runtime)
    if expected and _token_of(body) != expected:
        raise await _reject(runtime, connector.id, NotAuthenticated("verification token does not match"))
    if body.get("type") == "url_verification":
        challenge = body.get("challenge")
        if not isinstance(challenge, str):
            raise InvalidRequest("url_verification without a challenge", field="challenge")
        return JSONResponse({"challenge": challenge})

    bridge: FeishuBridge = request.app.state.bridge
    try:
        event = parse_event(body)
    except EventParseError as exc:
        raise await _reject(runtime, connector.id, InvalidRequest(f"unreadable event: {exc}")) from exc
    if isinstance(event, CardActionEvent):
        try:
            answer = await asyncio.wait_for(
                bridge.dispatch_card(connector.id, body), timeout=runtime.settings.feishu_card_deadline
            )
        except TimeoutError:
            answer = CARD_TIMEOUT_TOAST
        return JSONResponse(answer or {})
    bridge.spawn_dispatch(connector.id, body, transport="callback")  # answer first (Feishu waits 3 s at most)
    return JSONResponse({})


ConnectorId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "/callback/{connector_id}",
    summary="Feishu event callback for one connector (no JWT: Feishu signs)",
    responses=errors(400, 401),
    openapi_extra=callback_docs.OPERATION,
)
async def callback_for(
    connector_id: ConnectorId, request: Request, runtime: RuntimeDep, session: SessionDep
) -> JSONResponse:
    raw = await request.body()
    connector = await get_connector(session, connector_id)
    await session.close()  # the work below opens sessions of its own
    return await _handle(request, connector, raw, runtime)


@router.post(
    "/callback",
    summary="Feishu event callback, connector found from the event's app_id",
    responses=errors(400, 401, 404),
    openapi_extra=callback_docs.OPERATION,
)
async def callback(request: Request, runtime: RuntimeDep, session: SessionDep) -> JSONResponse:
    raw = await request.body()
    connectors = await list_connectors(session)
    await session.close()
    if len(connectors) == 1:
        return await _handle(request, connectors[0], raw, runtime)
    # Several connectors: find the one whose app the event names (decrypting with each key if need be).
    body = _json(raw)
    for connector in connectors:
        plain = body
        encrypt_key = read_secret(runtime.secrets, connector, "encrypt_key")
        if encrypt_key and isinstance(body.get("encrypt"), str):
            try:
                plain = json.loads(callback_crypto.decrypt(body["encrypt"], encrypt_key))
            except (callback_crypto.CallbackCryptoError, ValueError):
                continue
        header = plain.get("header") if isinstance(plain, dict) else None
        if isinstance(header, dict) and header.get("app_id") == connector.app_id:
            return await _handle(request, connector, raw, runtime)
    raise NotFound("no connector matches this callback: use /api/integrations/feishu/callback/{id}")
