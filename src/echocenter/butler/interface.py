"""What the inbound pipeline hands the Butler, and the one method a Butler must have."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)


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


class Butler(Protocol):
    """Driven by the durable inbox (feishu/inbox.py), possibly again after a crash: both steps must be
    idempotent for one message (a unique key on its turn, a deterministic Feishu ``uuid`` on each reply)."""

    async def handle(self, message: InboundMessage) -> None:
        """Take the message in (persist the user's turn). Raising means it was not taken: it is tried
        again later."""

    async def answer(self, message: InboundMessage) -> None:
        """Think and reply; returns once the answer is sent. Raising leaves the message for a re-drive."""


class UnconfiguredButler:
    """Until a Butler is wired in, routed messages are accepted and noted in the process log."""

    async def handle(self, message: InboundMessage) -> None:
        log_event(log, "butler_not_configured", message_id=message.message_id, chat_id=message.chat_id)

    async def answer(self, message: InboundMessage) -> None:
        return None
