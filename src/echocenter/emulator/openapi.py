"""Feishu Open API endpoints as Feishu answers them: auth, bot info, send / reply / patch messages."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from echocenter.emulator.events import parse_card
from echocenter.emulator.state import App, CardEntity, Message, Reaction, World, new_id, now_ms

TEXT_LIMIT_BYTES = 150 * 1024
CARD_LIMIT_BYTES = 30 * 1024
MSG_TYPES = ("text", "post", "interactive")
RECEIVE_ID_TYPES = ("chat_id", "open_id", "user_id", "union_id")

MISSING_TOKEN = 99991661
INVALID_TOKEN = 99991663
RATE_LIMITED = 99991400
FIELD_VALIDATION = 99992402
INVALID_PARAM = 230001
TOO_LONG = 230025
NO_BOT = 11205  # bot/v3/info of an app without the Bot capability ("app do not have bot")
BOT_NOT_ACTIVATED = 230006  # sending as an app whose Bot capability is off
SCOPE_MISSING = 99991672
SEND_SCOPES = ("im:message", "im:message:send_as_bot")  # any one of them lets the bot send
CARDKIT_SCOPE = "cardkit:card:write"
CARD_CALLS_PER_SECOND = 10  # CardKit: 10 operations per second per card
CARD_NOT_FOUND = 300301
SEQUENCE_NOT_INCREASING = 300317
STREAMING_CLOSED = 300309
CARD_ALREADY_SENT = 230099
REACTION_TYPE_INVALID = 231001
REACTION_NOT_FOUND = 231003
RESOURCE_NOT_FOUND = 234003
# emoji_type values of Feishu's reaction list (a subset): others are refused as invalid.
EMOJI_TYPES = frozenset(
    [
        "OK",
        "THUMBSUP",
        "THANKS",
        "MUSCLE",
        "FINGERHEART",
        "APPLAUSE",
        "FISTBUMP",
        "JIAYI",
        "DONE",
        "SMILE",
        "BLUSH",
        "LAUGH",
        "SMIRK",
        "LOL",
        "FACEPALM",
        "THINKING",
        "HEART",
        "CLAP",
        "PARTY",
        "FIRE",
        "PRAY",
        "CRY",
        "ANGRY",
        "SURPRISED",
        "EYESCLOSED",
        "Get",
        "OnIt",
        "Typing",
        "LGTM",
        "OneSecond",
        "CheckMark",
        "CrossMark",
        "Yes",
        "No",
        "GeneralDoNotDisturb",
        "StatusInFlight",
    ]
)


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        msg: str,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status, self.headers = code, msg, status, headers
        self.extra = extra or {}


def _ok(data: dict[str, Any] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": 0, "msg": "success", **extra}
    if data is not None:
        body["data"] = data
    return JSONResponse(body)


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(
        {"code": exc.code, "msg": exc.msg, **exc.extra}, status_code=exc.status, headers=exc.headers
    )


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ApiError(FIELD_VALIDATION, "request body is not JSON") from exc
    if not isinstance(body, dict):
        raise ApiError(FIELD_VALIDATION, "request body must be a JSON object")
    return body


class OpenApi:
    def __init__(self, world: World) -> None:
        self.world = world

    def routes(self) -> list[Route]:
        return [
            Route(
                "/open-apis/auth/v3/tenant_access_token/internal",
                self._guard(self.tenant_token),
                methods=["POST"],
            ),
            Route("/open-apis/bot/v3/info", self._guard(self.bot_info), methods=["GET"]),
            Route("/open-apis/im/v1/messages", self._guard(self.create_message), methods=["POST"]),
            Route("/open-apis/im/v1/messages/{message_id}/reply", self._guard(self.reply), methods=["POST"]),
            Route(
                "/open-apis/im/v1/messages/{message_id}", self._guard(self.patch_message), methods=["PATCH"]
            ),
            Route(
                "/open-apis/interactive/v1/card/update",
                self._guard(self.delayed_card_update),
                methods=["POST"],
            ),
            Route("/open-apis/cardkit/v1/cards", self._guard(self.create_card), methods=["POST"]),
            Route(
                "/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content",
                self._guard(self.stream_content),
                methods=["PUT"],
            ),
            Route(
                "/open-apis/cardkit/v1/cards/{card_id}/settings",
                self._guard(self.card_settings),
                methods=["PATCH"],
            ),
            Route(
                "/open-apis/im/v1/messages/{message_id}/reactions",
                self._guard(self.add_reaction),
                methods=["POST"],
            ),
            Route(
                "/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}",
                self._guard(self.delete_reaction),
                methods=["DELETE"],
            ),
            Route(
                "/open-apis/im/v1/messages/{message_id}/resources/{file_key}",
                self._guard(self.resource),
                methods=["GET"],
            ),
        ]

    def _guard(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            self.world.counters[f"{request.method} {request.scope['route'].path}"] += 1
            try:
                response: Response = await handler(request)
                return response
            except ApiError as exc:
                return _error(exc)

        return endpoint

    def _app(self, request: Request) -> App:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise ApiError(MISSING_TOKEN, "Missing access token for authorization.")
        app = self.world.app_for_token(header[7:].strip())
        if app is None:
            raise ApiError(
                INVALID_TOKEN,
                "Invalid access token for authorization. Please make a request with token attached.",
            )
        return app

    def _may_send(self, app: App) -> None:
        """Feishu's checks before a bot may send: the Bot capability, then one of the send scopes."""
        if not app.bot_enabled:
            raise ApiError(BOT_NOT_ACTIVATED, "Bot ability is not activated.")
        if all(scope in app.missing_scopes for scope in SEND_SCOPES):
            required = ", ".join(SEND_SCOPES)
            raise ApiError(
                SCOPE_MISSING,
                f"Access denied. One of the following scopes is required: [{required}]."
                f"应用尚未开通所需的应用身份权限：[{required}]",
                extra={
                    "error": {
                        "permission_violations": [
                            {"type": "action_scope_required", "subject": scope} for scope in SEND_SCOPES
                        ]
                    }
                },
            )

    def _maybe_fail_send(self) -> None:
        failures = self.world.faults.send_failures
        if not failures:
            return
        failure = failures.pop(0)
        self.world.counters["fault.send_failure"] += 1
        if failure.kind == "rate_limit":
            raise ApiError(
                RATE_LIMITED,
                "request trigger frequency limit",
                status=429,
                headers={"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": str(failure.reset_seconds)},
            )
        raise ApiError(1, "internal error", status=500)

    # --- endpoints ----------------------------------------------------------------------------------
    async def tenant_token(self, request: Request) -> JSONResponse:
        body = await _json_body(request)  # the official SDK sends this without a Content-Type
        app = self.world.apps.get(str(body.get("app_id", "")))
        if app is None:
            return JSONResponse({"code": 10003, "msg": "invalid param"})
        if body.get("app_secret") != app.app_secret:
            return JSONResponse({"code": 10014, "msg": "app secret invalid"})
        token, expire = self.world.issue_token(app.app_id)
        return JSONResponse({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire})

    async def bot_info(self, request: Request) -> JSONResponse:
        app = self._app(request)
        if not app.bot_enabled:
            raise ApiError(NO_BOT, "app do not have bot")
        return _ok(
            bot={
                "activate_status": 2 if app.published else 0,  # 0: not yet installed in the tenant
                "app_name": app.bot_name,
                "avatar_url": "",
                "ip_white_list": [],
                "open_id": app.bot_open_id,
            }
        )

    def _content(self, body: dict[str, Any]) -> tuple[str, str]:
        msg_type, content = body.get("msg_type"), body.get("content")
        if msg_type not in MSG_TYPES:
            raise ApiError(INVALID_PARAM, f"msg_type must be one of {', '.join(MSG_TYPES)} in this emulator")
        if not isinstance(content, str):
            raise ApiError(FIELD_VALIDATION, "content must be a JSON string")
        limit = TEXT_LIMIT_BYTES if msg_type == "text" else CARD_LIMIT_BYTES
        if len(content.encode()) > limit:
            raise ApiError(TOO_LONG, f"message content exceeds {limit} bytes")
        try:
            parsed = json.loads(content)
        except ValueError as exc:
            raise ApiError(INVALID_PARAM, "content is not valid JSON") from exc
        if msg_type == "text" and not (isinstance(parsed, dict) and isinstance(parsed.get("text"), str)):
            raise ApiError(INVALID_PARAM, 'text content must be {"text": "..."}')
        if msg_type != "text" and not isinstance(parsed, dict):
            raise ApiError(INVALID_PARAM, "content must be a JSON object")
        return msg_type, content

    def _uuid(self, body: dict[str, Any]) -> str:
        value = body.get("uuid", "")
        if not isinstance(value, str) or len(value) > 50:
            raise ApiError(FIELD_VALIDATION, "uuid must be a string of at most 50 characters")
        return value

    async def create_message(self, request: Request) -> JSONResponse:
        app = self._app(request)
        self._may_send(app)
        self._maybe_fail_send()
        id_type = request.query_params.get("receive_id_type", "")
        if id_type not in RECEIVE_ID_TYPES:
            raise ApiError(FIELD_VALIDATION, "receive_id_type must be chat_id, open_id, user_id or union_id")
        body = await _json_body(request)
        uuid = self._uuid(body)
        if uuid and (earlier := self.world.message_for_uuid(app.app_id, uuid)):
            return _ok(earlier.api_view(app.tenant_key))
        msg_type, content = self._content(body)
        card = self._card_to_send(app, msg_type, content)
        chat_id = self._resolve_chat(id_type, str(body.get("receive_id", "")))
        message = self.world.store(
            Message(
                new_id("om_"), chat_id, app.bot_open_id, "app", msg_type, content, now_ms(), app_id=app.app_id
            )
        )
        if card is not None:
            card.message_id = message.message_id
        if uuid:
            self.world.remember_uuid(app.app_id, uuid, message.message_id)
        return _ok(message.api_view(app.tenant_key))

    def _resolve_chat(self, id_type: str, receive_id: str) -> str:
        if id_type == "chat_id":
            if receive_id not in self.world.chats:
                raise ApiError(INVALID_PARAM, f"chat {receive_id} not found or the bot is not in it")
            return receive_id
        for user in self.world.users.values():
            if getattr(user, id_type) == receive_id and not user.is_bot:
                return self.world.p2p_chat_with(user.open_id).chat_id
        raise ApiError(INVALID_PARAM, f"no user with {id_type} {receive_id}")

    async def reply(self, request: Request) -> JSONResponse:
        app = self._app(request)
        self._may_send(app)
        self._maybe_fail_send()
        parent = self.world.messages.get(request.path_params["message_id"])
        if parent is None:
            raise ApiError(INVALID_PARAM, "the message to reply to does not exist")
        body = await _json_body(request)
        uuid = self._uuid(body)
        if uuid and (earlier := self.world.message_for_uuid(app.app_id, uuid)):
            return _ok(earlier.api_view(app.tenant_key))
        msg_type, content = self._content(body)
        card = self._card_to_send(app, msg_type, content)
        thread_id = parent.thread_id
        if body.get("reply_in_thread") is True and not thread_id:
            thread_id = parent.thread_id = new_id("omt_", 8)
        message = self.world.store(
            Message(
                new_id("om_"),
                parent.chat_id,
                app.bot_open_id,
                "app",
                msg_type,
                content,
                now_ms(),
                app_id=app.app_id,
                root_id=parent.root_id or parent.message_id,
                parent_id=parent.message_id,
                thread_id=thread_id,
                reply_in_thread=body.get("reply_in_thread") is True,
            )
        )
        if card is not None:
            card.message_id = message.message_id
        if uuid:
            self.world.remember_uuid(app.app_id, uuid, message.message_id)
        return _ok(message.api_view(app.tenant_key))

    def _card_to_send(self, app: App, msg_type: str, content: str) -> CardEntity | None:
        """``{"type":"card","data":{"card_id"}}``: a card entity of this app, never sent before."""
        parsed = json.loads(content)
        if msg_type != "interactive" or parsed.get("type") != "card":
            return None
        data = parsed.get("data")
        card_id = data.get("card_id") if isinstance(data, dict) else None
        card = self.world.cards.get(str(card_id))
        if card is None or card.app_id != app.app_id:
            raise ApiError(CARD_NOT_FOUND, f"card {card_id} not found")
        if card.message_id:
            raise ApiError(CARD_ALREADY_SENT, "a card entity can be sent only once")
        return card

    # --- CardKit ----------------------------------------------------------------------------------
    def _card(self, app: App, card_id: str) -> CardEntity:
        if CARDKIT_SCOPE in app.missing_scopes:
            raise ApiError(
                SCOPE_MISSING, f"Access denied. One of the following scopes is required: [{CARDKIT_SCOPE}]."
            )
        card = self.world.cards.get(card_id)
        if card is None or card.app_id != app.app_id:
            raise ApiError(CARD_NOT_FOUND, f"card {card_id} not found")
        return card

    def _count_call(self, card: CardEntity) -> None:
        now = time.time()
        recent = [c for c in card.calls if now - c["at"] < 1.0]
        if len(recent) >= CARD_CALLS_PER_SECOND:
            self.world.counters["cardkit.rate_limited"] += 1
            raise ApiError(
                RATE_LIMITED,
                "request trigger frequency limit",
                status=429,
                headers={"x-ogw-ratelimit-limit": str(CARD_CALLS_PER_SECOND), "x-ogw-ratelimit-reset": "1"},
            )

    def _sequence(self, card: CardEntity, body: dict[str, Any]) -> int:
        sequence = body.get("sequence")
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
            raise ApiError(FIELD_VALIDATION, "sequence must be a positive integer")
        if sequence <= card.last_sequence:
            raise ApiError(SEQUENCE_NOT_INCREASING, "sequence number compare failed")
        return sequence

    async def create_card(self, request: Request) -> JSONResponse:
        app = self._app(request)
        if CARDKIT_SCOPE in app.missing_scopes:
            raise ApiError(
                SCOPE_MISSING, f"Access denied. One of the following scopes is required: [{CARDKIT_SCOPE}]."
            )
        body = await _json_body(request)
        if body.get("type") != "card_json" or not isinstance(body.get("data"), str):
            raise ApiError(FIELD_VALIDATION, 'type must be "card_json" and data the card JSON as a string')
        try:
            card = json.loads(body["data"])
        except ValueError as exc:
            raise ApiError(INVALID_PARAM, "data is not valid JSON") from exc
        if not isinstance(card, dict) or card.get("schema") != "2.0":
            raise ApiError(INVALID_PARAM, "card entities take card JSON 2.0 only")
        config: dict[str, Any] = card["config"] if isinstance(card.get("config"), dict) else {}
        if config.get("update_multi") is False:
            raise ApiError(INVALID_PARAM, "card entities cannot be exclusive cards (update_multi false)")
        entity = CardEntity(new_id("7", 10), app.app_id, card, bool(config.get("streaming_mode")))
        entity.calls.append({"op": "create", "at": time.time(), "sequence": 0, "content": ""})
        self.world.cards[entity.card_id] = entity
        return _ok({"card_id": entity.card_id})

    async def stream_content(self, request: Request) -> JSONResponse:
        app = self._app(request)
        card = self._card(app, request.path_params["card_id"])
        self._count_call(card)
        body = await _json_body(request)
        sequence = self._sequence(card, body)
        content = body.get("content")
        if not isinstance(content, str):
            raise ApiError(FIELD_VALIDATION, "content must be a string")
        element = card.element(request.path_params["element_id"])
        if element is None:
            raise ApiError(INVALID_PARAM, "element not found in the card")
        if not card.streaming_mode:
            raise ApiError(STREAMING_CLOSED, "the card is not in streaming mode")
        if (
            len(json.dumps(card.card, ensure_ascii=False).encode())
            - len(element.get("content", "").encode())
            + len(content.encode())
            > CARD_LIMIT_BYTES
        ):
            raise ApiError(TOO_LONG, f"the card would exceed {CARD_LIMIT_BYTES} bytes")
        card.last_sequence = sequence
        element["content"] = content
        card.calls.append({"op": "content", "at": time.time(), "sequence": sequence, "content": content})
        return _ok({})

    async def card_settings(self, request: Request) -> JSONResponse:
        app = self._app(request)
        card = self._card(app, request.path_params["card_id"])
        self._count_call(card)
        body = await _json_body(request)
        sequence = self._sequence(card, body)
        try:
            settings = json.loads(body.get("settings") or "")
        except (ValueError, TypeError) as exc:
            raise ApiError(FIELD_VALIDATION, "settings must be a JSON string") from exc
        config = settings.get("config") if isinstance(settings, dict) else None
        if not isinstance(config, dict):
            raise ApiError(FIELD_VALIDATION, "settings must hold a config object")
        card.last_sequence = sequence
        if "streaming_mode" in config:
            card.streaming_mode = bool(config["streaming_mode"])
        card.card.setdefault("config", {}).update(config)
        card.calls.append({"op": "settings", "at": time.time(), "sequence": sequence, "content": ""})
        return _ok({})

    # --- reactions and resources ------------------------------------------------------------------
    async def add_reaction(self, request: Request) -> JSONResponse:
        app = self._app(request)
        message = self.world.messages.get(request.path_params["message_id"])
        if message is None:
            raise ApiError(INVALID_PARAM, "message not found")
        body = await _json_body(request)
        kind = body.get("reaction_type")
        emoji = kind.get("emoji_type") if isinstance(kind, dict) else None
        if not isinstance(emoji, str) or emoji not in EMOJI_TYPES:
            raise ApiError(REACTION_TYPE_INVALID, "reaction type is invalid")
        reaction = Reaction(new_id("ZCa", 10), message.message_id, emoji, app.app_id, "app", now_ms())
        self.world.reactions[reaction.reaction_id] = reaction
        self.world.reaction_log.append(
            {"op": "add", "message_id": message.message_id, "emoji_type": emoji, "at": time.time()}
        )
        return _ok(_reaction_view(reaction))

    async def delete_reaction(self, request: Request) -> JSONResponse:
        app = self._app(request)
        reaction = self.world.reactions.get(request.path_params["reaction_id"])
        if (
            reaction is None
            or reaction.message_id != request.path_params["message_id"]
            or reaction.operator_id != app.app_id
        ):
            raise ApiError(REACTION_NOT_FOUND, "reaction not found or not added by this app")
        del self.world.reactions[reaction.reaction_id]
        self.world.reaction_log.append(
            {
                "op": "delete",
                "message_id": reaction.message_id,
                "emoji_type": reaction.emoji_type,
                "at": time.time(),
            }
        )
        return _ok(_reaction_view(reaction))

    async def resource(self, request: Request) -> Response:
        self._app(request)
        kind = request.query_params.get("type", "")
        if kind not in ("image", "file"):
            raise ApiError(FIELD_VALIDATION, "type must be image or file")
        found = self.world.resources.get(request.path_params["file_key"])
        if found is None or found.message_id != request.path_params["message_id"] or found.kind != kind:
            raise ApiError(RESOURCE_NOT_FOUND, "resource not found in this message")
        headers = {"Content-Disposition": f'attachment; filename="{found.name or found.key}"'}
        return Response(found.data, media_type=found.content_type, headers=headers)

    def _update_card(self, message: Message, card: dict[str, Any] | str) -> None:
        content = card if isinstance(card, str) else json.dumps(card, ensure_ascii=False)
        if len(content.encode()) > CARD_LIMIT_BYTES:
            raise ApiError(TOO_LONG, f"card exceeds {CARD_LIMIT_BYTES} bytes")
        try:
            parse_card(content)
        except ValueError as exc:
            raise ApiError(INVALID_PARAM, "the card is not a JSON object") from exc
        message.content, message.updated, message.update_time = content, True, now_ms()

    async def patch_message(self, request: Request) -> JSONResponse:
        app = self._app(request)
        self._may_send(app)
        message = self.world.messages.get(request.path_params["message_id"])
        if message is None or message.app_id != app.app_id:
            raise ApiError(INVALID_PARAM, "message not found or not sent by this app")
        if message.msg_type != "interactive":
            raise ApiError(INVALID_PARAM, "only cards (interactive messages) can be updated")
        body = await _json_body(request)
        if not isinstance(body.get("content"), str):
            raise ApiError(FIELD_VALIDATION, "content must be a JSON string")
        self._update_card(message, body["content"])
        return _ok({})

    async def delayed_card_update(self, request: Request) -> JSONResponse:
        app = self._app(request)
        body = await _json_body(request)
        entry = self.world.card_tokens.get(str(body.get("token", "")))
        if (
            entry is None
            or entry.app_id != app.app_id
            or entry.expires_at < time.time()
            or entry.uses_left < 1
        ):
            raise ApiError(INVALID_PARAM, "card token invalid, expired or used up")
        card = body.get("card")
        if not isinstance(card, dict):
            raise ApiError(FIELD_VALIDATION, "card must be a JSON object")
        entry.uses_left -= 1
        self._update_card(self.world.messages[entry.message_id], card)
        return _ok()


def _reaction_view(reaction: Reaction) -> dict[str, Any]:
    return {
        "reaction_id": reaction.reaction_id,
        "operator": {"operator_id": reaction.operator_id, "operator_type": reaction.operator_type},
        "action_time": str(reaction.action_time),
        "reaction_type": {"emoji_type": reaction.emoji_type},
    }
