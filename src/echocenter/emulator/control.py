"""The control API: set up the tenant, act as users (write, click), inspect what the bot did, inject faults.

Plain JSON over HTTP under ``/control``; no authentication (the emulator is a local test double: keep it on
127.0.0.1). Documented in README.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from echocenter.emulator.bench import LoadGenerator, PushIn
from echocenter.emulator.events import (
    button_text,
    card_action,
    card_buttons,
    card_inputs,
    message_receive,
    parse_card,
    text_with_mentions,
)
from echocenter.emulator.longconn import LongConnHub
from echocenter.emulator.state import (
    App,
    CardEntity,
    Message,
    Resource,
    SendFailure,
    User,
    World,
    new_id,
    now_ms,
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppIn(_Body):
    app_id: str = Field(default_factory=lambda: new_id("cli_", 8))
    app_secret: str = Field(default_factory=lambda: new_id("", 16))
    bot_name: str = "EchoCenter Bot"
    bot_open_id: str = Field(default_factory=lambda: new_id("ou_bot_"))
    verification_token: str = ""
    encrypt_key: str = ""
    callback_url: str = ""


class AppPatch(_Body):
    verification_token: str | None = None
    encrypt_key: str | None = None
    callback_url: str | None = Field(
        default=None, description="events go here by HTTP; empty: long connection"
    )
    bot_enabled: bool | None = Field(default=None, description="false: the app has no Bot capability")
    missing_scopes: list[str] | None = Field(default=None, description="scopes the app was not granted")
    long_connection: bool | None = Field(default=None, description="false: not in long-connection mode")
    published: bool | None = Field(default=None, description="false: no published, active version")


class UserIn(_Body):
    name: str
    open_id: str = ""
    user_id: str = ""


class ChatIn(_Body):
    name: str
    chat_type: Literal["p2p", "group"] = "group"
    members: list[str] = []
    chat_id: str = ""


class SendIn(_Body):
    chat_id: str
    sender: str = Field(description="open_id of the user who writes")
    text: str = ""
    message_type: Literal["text", "post", "image", "file"] = "text"
    post_title: str = ""
    # image / file (or an image in a post): the bytes, base64, behind the image_key / file_key
    resource_base64: str = ""
    resource_content_type: str = "application/octet-stream"
    file_name: str = ""
    mention_bot: bool = False
    mentions: list[str] = Field(default=[], description="open_ids mentioned besides the bot")
    thread_of: str = Field(default="", description="message_id to answer in its thread")
    app_id: str = ""
    wait_ack_seconds: float = Field(default=0, ge=0, le=30)


class ClickIn(_Body):
    message_id: str
    operator: str = Field(description="open_id of the user who clicks")
    button: str | int = Field(default=0, description="button text, or its index in the card")
    value: dict[str, Any] | None = Field(
        default=None, description="click with this value instead of a button's (a stale copy of the card)"
    )
    form_value: dict[str, Any] | None = None
    app_id: str = ""


class RawEventIn(_Body):
    app_id: str = ""
    payload: Any


class SendFailureIn(_Body):
    count: int = Field(ge=1, le=1000)
    kind: Literal["5xx", "rate_limit"] = "5xx"
    reset_seconds: int = Field(default=1, ge=0, le=3600)


class FaultsIn(_Body):
    drop_connections: bool = False
    fail_next_sends: SendFailureIn | None = None
    refuse_tokens: bool | None = None
    invalidate_tokens: bool = False
    refuse_handshakes: dict[str, Any] | None = Field(
        default=None, description='{"status": 514|403, "msg": "...", "autherrcode": 1000040350}; {} to stop'
    )
    discovery_busy: int | None = Field(default=None, ge=0)
    ack_delay_seconds: float | None = Field(default=None, ge=0, le=60)
    silent: bool | None = Field(default=None, description="keep connections open but answer nothing")


class ConfigIn(_Body):
    ack_timeout_seconds: float | None = Field(default=None, gt=0)
    max_delivery_attempts: int | None = Field(default=None, ge=1)
    card_response_timeout_seconds: float | None = Field(default=None, gt=0)
    max_connections_per_app: int | None = Field(default=None, ge=1)
    fragment_bytes: int | None = Field(default=None, ge=1)
    ping_interval_seconds: int | None = Field(default=None, ge=1)
    reconnect_interval_seconds: int | None = Field(default=None, ge=0)
    reconnect_nonce_seconds: int | None = Field(default=None, ge=0)
    reconnect_count: int | None = None
    quotas_enabled: bool | None = None
    quota_chat_per_second: int | None = Field(default=None, ge=0)
    quota_app_per_second: int | None = Field(default=None, ge=0)
    quota_app_per_minute: int | None = Field(default=None, ge=0)
    quota_patch_per_message_per_second: int | None = Field(default=None, ge=0)


def _submits_form(button: dict[str, Any]) -> bool:
    return button.get("action_type") == "form_submit" or button.get("form_action_type") == "submit"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "bad_request" if status == 400 else "not_found", "message": message}},
        status_code=status,
    )


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _user_content(body: SendIn, text: str, mentions: list[dict[str, Any]], resource_key: str) -> str:
    """The message's ``content`` as Feishu carries it for its type."""
    if body.message_type == "post":
        paragraph: list[dict[str, Any]] = [
            {"tag": "at", "user_id": m["key"], "user_name": m["name"]} for m in mentions
        ]
        paragraph.append({"tag": "text", "text": (" " if mentions else "") + body.text})
        paragraphs = [paragraph]
        if resource_key:
            paragraphs.append([{"tag": "img", "image_key": resource_key}])
        return json.dumps({"title": body.post_title, "content": paragraphs}, ensure_ascii=False)
    if body.message_type == "image":
        return json.dumps({"image_key": resource_key})
    if body.message_type == "file":
        return json.dumps({"file_key": resource_key, "file_name": body.file_name or "file.txt"})
    return json.dumps({"text": text}, ensure_ascii=False)


def _find_button(card: dict[str, Any], wanted: int | str) -> dict[str, Any]:
    """The button clicked: by its index on the card, or by its text."""
    buttons = card_buttons(card)
    if isinstance(wanted, int):
        if not 0 <= wanted < len(buttons):
            raise ControlError(400, f"the card has {len(buttons)} buttons")
        return buttons[wanted]
    matches = [b for b in buttons if button_text(b) == wanted]
    if not matches:
        raise ControlError(400, f"the card has no button {wanted!r}")
    return matches[0]


def _apply_card_answer(message: Message, response: dict[str, Any]) -> bool:
    """Show the card the bot answered with (a raw card), as Feishu does; True when the card changed."""
    new_card = response.get("card")
    if not (
        isinstance(new_card, dict)
        and new_card.get("type") == "raw"
        and isinstance(new_card.get("data"), dict)
    ):
        return False
    message.content = json.dumps(new_card["data"], ensure_ascii=False)
    message.updated, message.update_time = True, now_ms()
    return True


def _message_view(message: Message, world: World) -> dict[str, Any]:
    sender = world.users.get(message.sender_open_id)
    view: dict[str, Any] = {
        "message_id": message.message_id,
        "chat_id": message.chat_id,
        "sender_open_id": message.sender_open_id,
        "sender_name": sender.name if sender else "",
        "sender_type": message.sender_type,
        "msg_type": message.msg_type,
        "content": json.loads(message.content),
        "create_time": message.create_time,
        "root_id": message.root_id,
        "parent_id": message.parent_id,
        "thread_id": message.thread_id,
        "reply_in_thread": message.reply_in_thread,
        "updated": message.updated,
        "mentions": message.mentions,
        "reactions": [
            {"reaction_id": r.reaction_id, "emoji_type": r.emoji_type, "operator_id": r.operator_id}
            for r in world.reactions.values()
            if r.message_id == message.message_id
        ],
    }
    card = _sent_card(message, world)
    if card is not None:  # a CardKit card entity: show what it holds now
        view["card"] = card.public()
    return view


def _sent_card(message: Message, world: World) -> CardEntity | None:
    if message.msg_type != "interactive":
        return None
    try:
        content = json.loads(message.content)
    except ValueError:
        return None
    data = content.get("data") if isinstance(content, dict) and content.get("type") == "card" else None
    return world.cards.get(str(data.get("card_id"))) if isinstance(data, dict) else None


class Control:
    def __init__(self, world: World, hub: LongConnHub) -> None:
        self.world = world
        self.hub = hub
        self.load = LoadGenerator(world, hub)

    def routes(self) -> list[Route]:
        def r(path: str, handler: Any, method: str) -> Route:
            return Route(f"/control{path}", self._guard(handler), methods=[method])

        return [
            r("/state", self.state, "GET"),
            r("/reset", self.reset, "POST"),
            r("/apps", self.add_app, "POST"),
            r("/apps/{app_id}", self.patch_app, "PATCH"),
            r("/users", self.add_user, "POST"),
            r("/chats", self.add_chat, "POST"),
            r("/chats/{chat_id}/messages", self.chat_messages, "GET"),
            r("/sent", self.sent, "GET"),
            r("/messages", self.send_as_user, "POST"),
            r("/cards/click", self.click, "POST"),
            r("/cardkit/{card_id}", self.card_entity, "GET"),
            r("/reactions", self.reaction_log, "GET"),
            r("/events", self.raw_event, "POST"),
            r("/deliveries", self.deliveries, "GET"),
            r("/connections", self.connections, "GET"),
            r("/counters", self.counters, "GET"),
            r("/counters/reset", self.reset_counters, "POST"),
            r("/faults", self.set_faults, "POST"),
            r("/config", self.set_config, "POST"),
            r("/quotas", self.quotas, "GET"),
            r("/quotas/reset", self.reset_quotas, "POST"),
            r("/bench/push", self.bench_push, "POST"),
            r("/bench/stats/{batch_id}", self.bench_stats, "GET"),
            Route("/control/resources/{key}", self.resource_bytes, methods=["GET"]),  # for the chat page
        ]

    async def resource_bytes(self, request: Request) -> Response:
        found = self.world.resources.get(request.path_params["key"])
        if found is None or found.kind != "image":
            return _error(404, "no such image")
        # Served as an image only; nosniff keeps a browser from reading it as anything else.
        mime = found.content_type if found.content_type.startswith("image/") else "application/octet-stream"
        return Response(found.data, media_type=mime, headers={"X-Content-Type-Options": "nosniff"})

    def _guard(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                result = await handler(request)
            except ControlError as exc:
                return _error(exc.status, exc.message)
            except ValidationError as exc:
                return _error(
                    400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                )
            return result if isinstance(result, JSONResponse) else JSONResponse(result)

        return endpoint

    async def _body(self, request: Request, model: type[_Body]) -> Any:
        return model.model_validate_json(await request.body() or b"{}")

    def _app(self, app_id: str) -> App:
        if not app_id:
            return next(iter(self.world.apps.values()))
        if app_id not in self.world.apps:
            raise ControlError(404, f"no app {app_id}")
        return self.world.apps[app_id]

    def _user(self, open_id: str) -> User:
        if open_id not in self.world.users:
            raise ControlError(404, f"no user {open_id}")
        return self.world.users[open_id]

    # --- directory ----------------------------------------------------------------------------------
    async def state(self, _: Request) -> dict[str, Any]:
        return {
            "apps": [a.public() for a in self.world.apps.values()],
            "users": [vars(u) for u in self.world.users.values()],
            "chats": [vars(c) for c in self.world.chats.values()],
            "config": vars(self.world.config),
            "faults": self.world.faults.public(),
        }

    async def reset(self, _: Request) -> dict[str, Any]:
        await self.hub.drop_all()
        self.hub.reset()
        self.world.reset()
        return {"ok": True}

    async def add_app(self, request: Request) -> dict[str, Any]:
        body: AppIn = await self._body(request, AppIn)
        app = self.world.add_app(App(**body.model_dump()))
        return {**app.public(), "app_secret": app.app_secret}

    async def patch_app(self, request: Request) -> dict[str, Any]:
        app = self._app(request.path_params["app_id"])
        body: AppPatch = await self._body(request, AppPatch)
        for key, value in body.model_dump(exclude_none=True).items():
            setattr(app, key, value)
        return app.public()

    async def add_user(self, request: Request) -> dict[str, Any]:
        body: UserIn = await self._body(request, UserIn)
        return vars(self.world.add_user(body.name, open_id=body.open_id, user_id=body.user_id))

    async def add_chat(self, request: Request) -> dict[str, Any]:
        body: ChatIn = await self._body(request, ChatIn)
        for member in body.members:
            self._user(member)
        return vars(self.world.add_chat(body.name, body.chat_type, body.members, chat_id=body.chat_id))

    async def chat_messages(self, request: Request) -> dict[str, Any]:
        chat_id = request.path_params["chat_id"]
        if chat_id not in self.world.chats:
            raise ControlError(404, f"no chat {chat_id}")
        return {"items": [_message_view(m, self.world) for m in self.world.chat_messages(chat_id)]}

    async def sent(self, request: Request) -> dict[str, Any]:
        app_id = request.query_params.get("app_id", "")
        by_chat: dict[str, list[dict[str, Any]]] = {}
        for message in self.world.messages.values():
            if message.sender_type == "app" and (not app_id or message.app_id == app_id):
                by_chat.setdefault(message.chat_id, []).append(_message_view(message, self.world))
        return {"chats": by_chat}

    # --- acting as people ---------------------------------------------------------------------------
    async def send_as_user(self, request: Request) -> dict[str, Any]:
        body: SendIn = await self._body(request, SendIn)
        app = self._app(body.app_id)
        sender = self._user(body.sender)
        chat = self.world.chats.get(body.chat_id)
        if chat is None:
            raise ControlError(404, f"no chat {body.chat_id}")
        mentioned = ([self.world.users[app.bot_open_id]] if body.mention_bot else []) + [
            self._user(m) for m in body.mentions
        ]
        text, mentions = text_with_mentions(body.text, mentioned, app.tenant_key)
        resource_key = ""
        if body.resource_base64:
            resource_key = new_id("img_v3_" if body.message_type in ("image", "post") else "file_v3_", 10)
        content = _user_content(body, text, mentions, resource_key)
        root_id, thread_id = self._thread_of(body.thread_of)
        message = self.world.store(
            Message(
                new_id("om_"),
                chat.chat_id,
                sender.open_id,
                "user",
                body.message_type,
                content,
                now_ms(),
                root_id=root_id,
                parent_id=body.thread_of,
                thread_id=thread_id,
                mentions=mentions,
            )
        )
        if resource_key:
            self.world.resources[resource_key] = Resource(
                resource_key,
                message.message_id,
                "file" if body.message_type == "file" else "image",
                base64.b64decode(body.resource_base64),
                body.resource_content_type,
                body.file_name,
            )
        delivery = self.hub.push(app.app_id, message_receive(app, sender, chat, message))
        if body.wait_ack_seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(delivery.acked.wait(), timeout=body.wait_ack_seconds)
        return {
            "message_id": message.message_id,
            "event_id": delivery.event_id,
            "delivery": delivery.public(),
        }

    def _thread_of(self, parent_id: str) -> tuple[str, str]:
        """(root_id, thread_id) for a reply in the thread of ``parent_id``; the parent joins a thread."""
        if not parent_id:
            return "", ""
        parent = self.world.messages.get(parent_id)
        if parent is None:
            raise ControlError(404, f"no message {parent_id}")
        parent.thread_id = parent.thread_id or new_id("omt_", 8)
        return parent.root_id or parent.message_id, parent.thread_id

    async def card_entity(self, request: Request) -> dict[str, Any]:
        card = self.world.cards.get(request.path_params["card_id"])
        if card is None:
            raise ControlError(404, "no such card entity")
        return card.public()

    async def reaction_log(self, _: Request) -> dict[str, Any]:
        return {"items": self.world.reaction_log}

    async def click(self, request: Request) -> dict[str, Any]:
        body: ClickIn = await self._body(request, ClickIn)
        message = self.world.messages.get(body.message_id)
        if message is None or message.msg_type != "interactive":
            raise ControlError(404, f"no card {body.message_id}")
        app = self._app(body.app_id or message.app_id)
        operator = self._user(body.operator)
        card = parse_card(message.content)
        button = {} if body.value is not None else _find_button(card, body.button)
        # A given value stands for a click on a card as it was before an update (a stale screen).
        value = body.value if body.value is not None else button.get("value", {})
        form_value = body.form_value
        if form_value is None and _submits_form(button):  # Feishu sends every field of the form, typed or not
            form_value = {name: "" for name in card_inputs(card)}
        event = card_action(
            app,
            operator,
            message,
            value=value,
            tag="button",
            name=button.get("name"),
            form_value=form_value,
            card_token=self.world.new_card_token(message.message_id, app.app_id),
        )
        delivery = self.hub.push(app.app_id, event)
        try:
            await asyncio.wait_for(
                delivery.acked.wait(), timeout=self.world.config.card_response_timeout_seconds
            )
        except TimeoutError:
            # What Feishu shows the user when the bot does not answer in time.
            return {"status": "timeout", "event_id": delivery.event_id, "error_code": 200340}
        assert delivery.ack is not None
        if delivery.ack.code != 200:
            return {"status": "error", "event_id": delivery.event_id, "ack_code": delivery.ack.code}
        response = delivery.ack.data if isinstance(delivery.ack.data, dict) else {}
        return {
            "status": "answered",
            "event_id": delivery.event_id,
            "response": response,
            "toast": response.get("toast"),
            "card_updated": _apply_card_answer(message, response),
        }

    async def raw_event(self, request: Request) -> dict[str, Any]:
        body: RawEventIn = await self._body(request, RawEventIn)
        app = self._app(body.app_id)
        if isinstance(body.payload, dict):
            delivery = self.hub.push(app.app_id, body.payload)
        else:  # a string goes as it is (e.g. broken JSON); anything else as its JSON
            raw = body.payload if isinstance(body.payload, str) else json.dumps(body.payload)
            delivery = self.hub.push_raw(app.app_id, raw.encode())
        return {"event_id": delivery.event_id}

    # --- inspection and faults ----------------------------------------------------------------------
    async def deliveries(self, _: Request) -> dict[str, Any]:
        return {"items": [d.public() for d in self.hub.deliveries.values()]}

    async def connections(self, _: Request) -> dict[str, Any]:
        return {"items": [c.public() for live in self.hub.connections.values() for c in live]}

    async def counters(self, _: Request) -> dict[str, Any]:
        return {"counters": dict(self.world.counters)}

    async def reset_counters(self, _: Request) -> dict[str, Any]:
        self.world.counters.clear()
        return {"ok": True}

    async def set_faults(self, request: Request) -> dict[str, Any]:
        body: FaultsIn = await self._body(request, FaultsIn)
        faults = self.world.faults
        dropped = await self.hub.drop_all() if body.drop_connections else 0
        if body.fail_next_sends:
            f = body.fail_next_sends
            faults.send_failures.extend(SendFailure(f.kind, f.reset_seconds) for _ in range(f.count))
        if body.refuse_tokens is not None:
            faults.refuse_tokens = body.refuse_tokens
        if body.invalidate_tokens:
            self.world.invalidate_tokens()
        if body.refuse_handshakes is not None:
            faults.refuse_handshakes = body.refuse_handshakes or None
        if body.discovery_busy is not None:
            faults.discovery_busy = body.discovery_busy
        if body.ack_delay_seconds is not None:
            faults.ack_delay_seconds = body.ack_delay_seconds
        if body.silent is not None:
            faults.silent = body.silent
        return {"faults": faults.public(), "dropped_connections": dropped}

    async def quotas(self, _: Request) -> dict[str, Any]:
        config = self.world.config
        return {
            "enabled": config.quotas_enabled,
            "limits": {
                "chat_per_second": config.quota_chat_per_second,
                "app_per_second": config.quota_app_per_second,
                "app_per_minute": config.quota_app_per_minute,
                "message_patch_per_second": config.quota_patch_per_message_per_second,
            },
            "refusals": dict(self.world.quotas.refusals),
            "refused_total": sum(self.world.quotas.refusals.values()),
        }

    async def reset_quotas(self, _: Request) -> dict[str, Any]:
        self.world.quotas.reset()
        return {"ok": True}

    async def bench_push(self, request: Request) -> dict[str, Any]:
        body: PushIn = await self._body(request, PushIn)  # type: ignore[arg-type]
        self._app(body.app_id)
        for chat_id in body.chat_ids or [body.chat_id]:
            if chat_id not in self.world.chats:
                raise ControlError(404, f"no chat {chat_id}")
        self._user(body.sender)
        return {"batch_id": self.load.start(body)}

    async def bench_stats(self, request: Request) -> dict[str, Any]:
        batch = self.load.batches.get(request.path_params["batch_id"])
        if batch is None:
            raise ControlError(404, "no such batch")
        answers = request.query_params.get("answers") == "1"  # a scan of all messages: asked for at the end
        return batch.stats() | (batch.answers(self.world.messages) if answers else {})

    async def set_config(self, request: Request) -> dict[str, Any]:
        body: ConfigIn = await self._body(request, ConfigIn)
        for key, value in body.model_dump(exclude_none=True).items():
            setattr(self.world.config, key, value)
        return {"config": vars(self.world.config)}
