"""The emulator's world: apps, users, chats, messages, tokens, counters and the faults it is told to inject.

All in memory: the emulator is a test double for a whole Feishu tenant, restarted empty (with the default
set) each time.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

TOKEN_TTL_SECONDS = 7200
TOKEN_RENEW_BELOW_SECONDS = 1800  # with less than 30 min left, Feishu issues a new token
UUID_DEDUP_SECONDS = 3600
CARD_TOKEN_TTL_SECONDS = 1800
CARD_TOKEN_USES = 2


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id(prefix: str, size: int = 12) -> str:
    return f"{prefix}{secrets.token_hex(size)}"


@dataclass
class App:
    app_id: str
    app_secret: str
    bot_open_id: str
    bot_name: str = "EchoCenter Bot"
    tenant_key: str = "tenant_emulator"
    verification_token: str = ""
    encrypt_key: str = ""
    callback_url: str = ""  # HTTP callback mode: events are POSTed here instead of the long connection
    # How the app is set up in the developer console (a misconfigured app for `echocenter doctor`).
    bot_enabled: bool = True  # the Bot capability
    missing_scopes: list[str] = field(default_factory=list)  # permission scopes not granted
    long_connection: bool = True  # events and callbacks subscribed in long-connection mode
    published: bool = True  # a version with the current setup is published and active

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("app_secret")
        return data


@dataclass
class User:
    open_id: str
    user_id: str
    union_id: str
    name: str
    is_bot: bool = False


@dataclass
class Chat:
    chat_id: str
    chat_type: str  # "p2p" | "group"
    name: str
    members: list[str]  # open_ids (the bot of every app is a member of every chat)


@dataclass
class Message:
    message_id: str
    chat_id: str
    sender_open_id: str
    sender_type: str  # "user" | "app"
    msg_type: str
    content: str  # the JSON string, as Feishu stores it
    create_time: int
    app_id: str = ""
    root_id: str = ""
    parent_id: str = ""
    thread_id: str = ""
    updated: bool = False
    update_time: int = 0
    reply_in_thread: bool = False  # a bot's reply sent with reply_in_thread: true
    mentions: list[dict[str, Any]] = field(default_factory=list)

    def api_view(self, tenant_key: str) -> dict[str, Any]:
        """How Open API responses show a message."""
        sender: dict[str, Any] = (
            {"id": self.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": tenant_key}
            if self.sender_type == "app"
            else {
                "id": self.sender_open_id,
                "id_type": "open_id",
                "sender_type": "user",
                "tenant_key": tenant_key,
            }
        )
        return {
            "message_id": self.message_id,
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "thread_id": self.thread_id,
            "msg_type": self.msg_type,
            "create_time": str(self.create_time),
            "update_time": str(self.update_time or self.create_time),
            "deleted": False,
            "updated": self.updated,
            "chat_id": self.chat_id,
            "sender": sender,
            "body": {"content": self.content},
            "mentions": self.mentions,
            "upper_message_id": "",
        }


@dataclass
class CardEntity:
    """A CardKit card entity (card JSON 2.0): its elements by element_id, its streaming state, and every
    call made on it (for tests: sequences, timing, the text as it grew)."""

    card_id: str
    app_id: str
    card: dict[str, Any]
    streaming_mode: bool
    last_sequence: int = 0
    message_id: str = ""  # set once sent (a card entity can be sent only once)
    calls: list[dict[str, Any]] = field(default_factory=list)  # {"op", "at", "sequence", "content"}

    def elements(self) -> list[dict[str, Any]]:
        body = self.card.get("body")
        elements = body.get("elements") if isinstance(body, dict) else None
        return [e for e in elements if isinstance(e, dict)] if isinstance(elements, list) else []

    def element(self, element_id: str) -> dict[str, Any] | None:
        return next((e for e in self.elements() if e.get("element_id") == element_id), None)

    def public(self) -> dict[str, Any]:
        return {
            "card_id": self.card_id,
            "card": self.card,
            "streaming_mode": self.streaming_mode,
            "message_id": self.message_id,
            "calls": self.calls,
        }


@dataclass
class Reaction:
    reaction_id: str
    message_id: str
    emoji_type: str
    operator_id: str  # the app_id for a bot, the open_id for a person
    operator_type: str  # "app" | "user"
    action_time: int


@dataclass
class Resource:
    """An image or file a person sent: the bytes behind a message's image_key / file_key."""

    key: str
    message_id: str
    kind: str  # "image" | "file"
    data: bytes
    content_type: str
    name: str = ""


@dataclass
class SendFailure:
    kind: str  # "5xx" | "rate_limit"
    reset_seconds: int = 1


@dataclass
class Faults:
    """What the control API asked the emulator to get wrong, and for how long."""

    send_failures: list[SendFailure] = field(default_factory=list)
    refuse_tokens: bool = False
    refuse_handshakes: dict[str, Any] | None = None  # {"status": 514|403, "msg": ..., "autherrcode": ...}
    discovery_busy: int = 0  # answer the next N discoveries with code 1 (system busy)
    ack_delay_seconds: float = 0.0  # acks are taken in only after this delay, as over a slow network
    silent: bool = False  # connections stay open but nothing is answered or pushed: a half-open link

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EmulatorConfig:
    ack_timeout_seconds: float = 3.0  # unacked events are pushed again after this
    max_delivery_attempts: int = 5
    card_response_timeout_seconds: float = 3.0
    max_connections_per_app: int = 50
    fragment_bytes: int = 16_384  # payloads larger than this travel in several frames (sum/seq)
    ping_interval_seconds: int = 120
    reconnect_interval_seconds: int = 120
    reconnect_nonce_seconds: int = 30
    reconnect_count: int = -1

    def client_config(self) -> dict[str, int]:
        return {
            "ReconnectCount": self.reconnect_count,
            "ReconnectInterval": self.reconnect_interval_seconds,
            "ReconnectNonce": self.reconnect_nonce_seconds,
            "PingInterval": self.ping_interval_seconds,
        }


@dataclass
class CardToken:
    message_id: str
    app_id: str
    expires_at: float
    uses_left: int = CARD_TOKEN_USES


class World:
    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.apps: dict[str, App] = {}
        self.users: dict[str, User] = {}  # by open_id
        self.chats: dict[str, Chat] = {}
        self.messages: dict[str, Message] = {}  # insertion order is chat order
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (app_id, expires_at)
        self.uuids: dict[tuple[str, str], tuple[str, float]] = {}  # (app_id, uuid) -> (message_id, at)
        self.card_tokens: dict[str, CardToken] = {}
        self.cards: dict[str, CardEntity] = {}
        self.reactions: dict[str, Reaction] = {}
        self.reaction_log: list[
            dict[str, Any]
        ] = []  # {"op": "add"|"delete", "message_id", "emoji_type", "at"}
        self.resources: dict[str, Resource] = {}
        self.counters: Counter[str] = Counter()
        self.faults = Faults()
        self.add_defaults()

    # --- the default tenant -------------------------------------------------------------------------
    DEFAULT_APP_ID = "cli_emulator0001"
    DEFAULT_APP_SECRET = "emulator-secret-0123456789abcdef"

    def add_defaults(self) -> None:
        self.add_app(App(self.DEFAULT_APP_ID, self.DEFAULT_APP_SECRET, bot_open_id="ou_bot_emulator0001"))
        alice = self.add_user("Alice", open_id="ou_alice", user_id="alice")
        bob = self.add_user("Bob", open_id="ou_bob", user_id="bob")
        self.add_chat("Ops", "group", [alice.open_id, bob.open_id], chat_id="oc_ops")
        self.add_chat("Alice", "p2p", [alice.open_id], chat_id="oc_p2p_alice")
        self.add_chat("Bob", "p2p", [bob.open_id], chat_id="oc_p2p_bob")

    def reset(self) -> None:
        self.__init__(self.config)  # type: ignore[misc]

    # --- directory ----------------------------------------------------------------------------------
    def add_app(self, app: App) -> App:
        self.apps[app.app_id] = app
        self.users[app.bot_open_id] = User(app.bot_open_id, "", new_id("on_"), app.bot_name, is_bot=True)
        return app

    def add_user(self, name: str, *, open_id: str = "", user_id: str = "") -> User:
        user = User(open_id or new_id("ou_"), user_id or new_id("", 4), new_id("on_"), name)
        self.users[user.open_id] = user
        return user

    def add_chat(self, name: str, chat_type: str, members: list[str], *, chat_id: str = "") -> Chat:
        chat = Chat(chat_id or new_id("oc_"), chat_type, name, members)
        self.chats[chat.chat_id] = chat
        return chat

    def p2p_chat_with(self, open_id: str) -> Chat:
        for chat in self.chats.values():
            if chat.chat_type == "p2p" and chat.members == [open_id]:
                return chat
        return self.add_chat(self.users[open_id].name, "p2p", [open_id])

    # --- tokens -------------------------------------------------------------------------------------
    def issue_token(self, app_id: str) -> tuple[str, int]:
        now = time.time()
        for token, (owner, expires_at) in self.tokens.items():
            if owner == app_id and expires_at - now > TOKEN_RENEW_BELOW_SECONDS:
                return token, int(expires_at - now)
        token = new_id("t-g1", 16)
        self.tokens[token] = (app_id, now + TOKEN_TTL_SECONDS)
        return token, TOKEN_TTL_SECONDS

    def app_for_token(self, token: str) -> App | None:
        entry = self.tokens.get(token)
        if entry is None or entry[1] < time.time() or self.faults.refuse_tokens:
            return None
        return self.apps.get(entry[0])

    def invalidate_tokens(self) -> None:
        self.tokens.clear()

    # --- messages -----------------------------------------------------------------------------------
    def store(self, message: Message) -> Message:
        self.messages[message.message_id] = message
        return message

    def chat_messages(self, chat_id: str) -> list[Message]:
        return [m for m in self.messages.values() if m.chat_id == chat_id]

    def remember_uuid(self, app_id: str, uuid: str, message_id: str) -> None:
        self.uuids[(app_id, uuid)] = (message_id, time.time())

    def message_for_uuid(self, app_id: str, uuid: str) -> Message | None:
        entry = self.uuids.get((app_id, uuid))
        if entry is None or time.time() - entry[1] > UUID_DEDUP_SECONDS:
            return None
        return self.messages.get(entry[0])

    def new_card_token(self, message_id: str, app_id: str) -> str:
        token = new_id("c-", 16)
        self.card_tokens[token] = CardToken(message_id, app_id, time.time() + CARD_TOKEN_TTL_SECONDS)
        return token
