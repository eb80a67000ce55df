"""HTTP callback mode: Feishu POSTs events here instead of the long connection.

Only translates: decrypt and authenticate the request, answer url_verification, then hand the typed event to
the bridge's seam (``on_event`` before answering; ``answer_card``, whose answer is the response). A bad
payload is a 4xx, never a 500.

Closed unless the connector turns ``callback_enabled`` on. Card actions (which decide approvals) are
taken only from signed requests, and a signed request is accepted once: its signature is remembered for the
timestamp window, in the database, so a replay is refused on every instance. Rejections are logged once per
connector and reason per interval (with a count), so a flood cannot fill the integration log.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from echocenter.api.deps import RuntimeDep, SessionDep
from echocenter.api.error_docs import errors
from echocenter.contracts import CardActionEvent
from echocenter.db.models import FeishuConnector, LogLevel
from echocenter.errors import EchoCenterError, InvalidRequest, NotAuthenticated, NotFound, PermissionDenied
from echocenter.feishu import callback_crypto, callback_docs
from echocenter.feishu.bridge import FeishuBridge
from echocenter.feishu.callback_guard import RejectionThrottle, first_sighting
from echocenter.feishu.connector_config import get_connector, list_connectors, read_secret
from echocenter.feishu.deps import BridgeDep, CallbackRejectionsDep
from echocenter.feishu.events import EventParseError, parse_event
from echocenter.integration_logs.service import LogAction, record_now
from echocenter.logging_setup import log_event
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/integrations/feishu", tags=["feishu callback"])


class CallbackDisabled(PermissionDenied):
    code = "callback_disabled"


Reject = Callable[[EchoCenterError], Awaitable[EchoCenterError]]  # logs (throttled), returns it to raise


async def _reject(
    rejections: RejectionThrottle, runtime: Runtime, connector_id: int, exc: EchoCenterError
) -> EchoCenterError:
    repeats = rejections.admit(connector_id, exc.message)
    if repeats is not None:
        await record_now(
            runtime.sessions,
            connector_id=connector_id,
            action=LogAction.CALLBACK_REJECTED,
            level=LogLevel.WARN,
            status=exc.status_code,
            reason=exc.message,
            repeats_not_logged=repeats,
        )
    return exc


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except RecursionError as exc:  # "[" * 100000: refused before any authentication, never a 500
        raise InvalidRequest("the body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the body is not a JSON object")
    return body


async def _open(
    request: Request, raw: bytes, connector: FeishuConnector, runtime: Runtime, reject: Reject
) -> tuple[dict[str, Any], str | None]:
    """The plaintext event and its checked X-Lark-Signature (None: the request was not signed).

    With an encrypt key the body must be encrypted and, but for Feishu's url_verification, signed."""

    body = _json(raw)
    encrypt_key = read_secret(runtime.secrets, connector, "encrypt_key")
    if not encrypt_key:
        return body, None
    if not isinstance(body.get("encrypt"), str):
        raise await reject(InvalidRequest("an encrypt key is set: the body must be encrypted"))
    try:
        plain = _json(callback_crypto.decrypt(body["encrypt"], encrypt_key))
    except (callback_crypto.CallbackCryptoError, InvalidRequest) as exc:
        raise await reject(InvalidRequest(f"cannot decrypt the body: {exc}")) from exc
    signature = request.headers.get("x-lark-signature")
    if plain.get("type") == "url_verification" and signature is None:
        return plain, None  # Feishu signs events; the challenge is proven by decrypting it
    timestamp = request.headers.get("x-lark-request-timestamp", "")
    nonce = request.headers.get("x-lark-request-nonce", "")
    if not signature or not timestamp.isdigit():
        raise await reject(NotAuthenticated("missing X-Lark-Signature or timestamp"))
    if abs(time.time() - int(timestamp)) > runtime.settings.feishu_callback_max_skew_seconds:
        raise await reject(NotAuthenticated("stale X-Lark-Request-Timestamp: replay refused"))
    if not callback_crypto.signature_matches(signature, timestamp, nonce, encrypt_key, raw):
        raise await reject(NotAuthenticated("X-Lark-Signature does not match"))
    return plain, signature


def _token_of(body: dict[str, Any]) -> str:
    header = body.get("header")
    token = header.get("token") if isinstance(header, dict) else body.get("token")  # v2, else v1
    return token if isinstance(token, str) else ""


def _same_token(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())  # constant time: no timing oracle


async def _authenticate(
    request: Request, connector: FeishuConnector, raw: bytes, runtime: Runtime, reject: Reject
) -> tuple[dict[str, Any], str | None]:
    """The plaintext body, once the connector takes callbacks and the request proved it speaks for Feishu,
    and its checked signature (None: the request was not signed). Every refusal is logged (throttled)."""

    if not connector.callback_enabled:
        raise await reject(
            CallbackDisabled("the HTTP callback is off for this connector (turn on callback_enabled)")
        )
    expected = read_secret(runtime.secrets, connector, "verification_token")
    if not expected and connector.encrypt_key_enc is None:
        # Without either, anyone who knows the URL could speak for Feishu: refuse rather than trust.
        raise await reject(
            NotAuthenticated("callback mode needs a verification token or an encrypt key on the connector")
        )
    body, signature = await _open(request, raw, connector, runtime, reject)
    if expected and not _same_token(_token_of(body), expected):
        raise await reject(NotAuthenticated("verification token does not match"))
    if signature is not None:
        async with runtime.sessions() as session:
            if not await first_sighting(session, connector_id=connector.id, signature=signature):
                raise await reject(NotAuthenticated("this signed request was seen before: replay refused"))
    return body, signature


async def _handle(
    request: Request,
    connector: FeishuConnector,
    raw: bytes,
    runtime: Runtime,
    *,
    bridge: FeishuBridge,
    rejections: RejectionThrottle,
) -> JSONResponse:
    async def reject(exc: EchoCenterError) -> EchoCenterError:
        return await _reject(rejections, runtime, connector.id, exc)

    body, signature = await _authenticate(request, connector, raw, runtime, reject)
    if body.get("type") == "url_verification":
        challenge = body.get("challenge")
        if not isinstance(challenge, str):
            raise InvalidRequest("url_verification without a challenge", field="challenge")
        return JSONResponse({"challenge": challenge})
    try:
        event = parse_event(body)
    except EventParseError as exc:
        unreadable = InvalidRequest(f"unreadable event: {exc}")
        raise await reject(unreadable) from exc
    if isinstance(event, CardActionEvent):
        if signature is None:
            # The verification token alone is a shared secret anyone on the tenant's side may hold; a click
            # decides what runs, so it must come signed with the encrypt key.
            refusal = NotAuthenticated(
                "card actions over the HTTP callback must be signed: set an encrypt key on the connector"
            )
            raise await reject(refusal)
        return JSONResponse(await bridge.answer_card(connector.id, event))
    # Answer only once the event is durable (claimed): if it cannot be stored this raises (HTTP 500), and
    # Feishu delivers it again. The Butler's work runs after the answer.
    await bridge.on_event(connector.id, event, transport="callback")
    return JSONResponse({})


ConnectorId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "/callback/{connector_id}",
    summary="Feishu event callback for one connector (no JWT: Feishu signs)",
    responses=errors(400, 401),
    openapi_extra=callback_docs.OPERATION,
)
async def callback_for(
    connector_id: ConnectorId,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    bridge: BridgeDep,
    rejections: CallbackRejectionsDep,
) -> JSONResponse:
    raw = await request.body()
    try:
        connector = await get_connector(session, connector_id)
    except NotFound:
        # Answered 404 (Feishu retries); the process log only: an unauthenticated caller could flood a table.
        log_event(
            log, "unknown_connector", level=logging.WARNING, connector_id=connector_id, transport="callback"
        )
        raise
    await session.close()  # the work below opens sessions of its own
    return await _handle(request, connector, raw, runtime, bridge=bridge, rejections=rejections)


@router.post(
    "/callback",
    summary="Feishu event callback, connector found from the event's app_id",
    responses=errors(400, 401, 404),
    openapi_extra=callback_docs.OPERATION,
)
async def callback(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    bridge: BridgeDep,
    rejections: CallbackRejectionsDep,
) -> JSONResponse:
    raw = await request.body()
    connectors = await list_connectors(session)
    await session.close()
    if len(connectors) == 1:
        return await _handle(request, connectors[0], raw, runtime, bridge=bridge, rejections=rejections)
    # Several connectors: find the one whose app the event names (decrypting with each key if need be),
    # among those that take callbacks at all.
    body = _json(raw)
    for connector in (c for c in connectors if c.callback_enabled):
        plain = body
        encrypt_key = read_secret(runtime.secrets, connector, "encrypt_key")
        if encrypt_key and isinstance(body.get("encrypt"), str):
            try:
                plain = json.loads(callback_crypto.decrypt(body["encrypt"], encrypt_key))
            except (callback_crypto.CallbackCryptoError, ValueError, RecursionError):
                continue
        header = plain.get("header") if isinstance(plain, dict) else None
        if isinstance(header, dict) and header.get("app_id") == connector.app_id:
            return await _handle(request, connector, raw, runtime, bridge=bridge, rejections=rejections)
    log_event(log, "unknown_connector", level=logging.WARNING, transport="callback")
    raise NotFound("no connector matches this callback: use /api/integrations/feishu/callback/{id}")
