"""What crosses layers, defined below all of them so every import points down.

The Feishu layer turns bytes into these values and hands them up; the layers above (the Butler, approvals)
never reach down into the Feishu layer's internals to read them. Where a lower layer needs a higher one to
act — route a message, decide a card click — the higher one hands it a callable of a type named here, at
wiring time (app.py), never the other way round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "CardActionEvent",
    "CardAnswer",
    "CardHandler",
    "InboundMessage",
    "MessageHandler",
    "UserIds",
]


@dataclass(frozen=True, slots=True)
class UserIds:
    """A person's three Feishu identities (any may be empty)."""

    open_id: str = ""
    user_id: str = ""
    union_id: str = ""

    @classmethod
    def parse(cls, data: Any) -> UserIds:
        if not isinstance(data, dict):
            return cls()
        return cls(
            str(data.get("open_id") or ""), str(data.get("user_id") or ""), str(data.get("union_id") or "")
        )

    def matches_any(self, ids: set[str]) -> bool:
        return any(v and v in ids for v in (self.open_id, self.user_id, self.union_id))


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message that passed every filter, with the Feishu identity of who wrote it and where."""

    connector_id: int
    event_id: str
    message_id: str
    text: str
    open_id: str
    user_id: str
    union_id: str
    chat_id: str
    chat_type: str
    root_id: str = ""
    parent_id: str = ""
    thread_id: str = ""
    message_type: str = "text"
    content: str = ""  # Feishu's JSON string, for image / file / post resources (text is in ``text``)

    @property
    def in_thread(self) -> bool:
        """Written in a thread (or a topic group): the answer goes to that thread."""
        return bool(self.thread_id or self.root_id)

    @property
    def thread_key(self) -> str:
        """Which conversation of this person in this chat: one per thread, "" outside threads."""
        return self.thread_id or self.root_id


class MessageHandler(Protocol):
    """What the durable inbox (feishu/inbox.py) drives with each admitted message — the Butler — possibly
    again after a crash: both steps must be idempotent for one message (a unique key on its turn, a
    deterministic Feishu ``uuid`` on each reply)."""

    async def handle(self, message: InboundMessage) -> None:
        """Take the message in (persist the user's turn). Raising means it was not taken: it is tried
        again later."""

    async def answer(self, message: InboundMessage) -> None:
        """Think and reply; returns once the answer is sent. Raising leaves the message for a re-drive."""


@dataclass(frozen=True, slots=True)
class CardActionEvent:
    """A click on an interactive card (from either transport)."""

    event_id: str
    app_id: str
    token: str  # verification token (v2 header.token)
    operator: UserIds
    value: dict[str, Any]
    tag: str
    form_value: dict[str, Any] | None
    card_token: str  # "c-…", for a delayed update
    open_message_id: str
    open_chat_id: str


# What a card click is answered with, inside Feishu's 3 s: ``{}``, a toast, and/or a replacement card.
CardAnswer = dict[str, Any]

# Decides a card click for a connector (approvals' workflow); the Feishu layer calls it and sends the answer.
CardHandler = Callable[[int, CardActionEvent], Awaitable[CardAnswer]]
