"""Which inbound messages reach the Butler: a pure function of the connector's settings and the event."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from echocenter.feishu.events import MessageEvent
from echocenter.feishu.text import (
    SUPPORTED_MESSAGE_TYPES,
    extract_text,
    mentions_bot,
    resources_of,
    strip_prefix,
)


class FilterReason(StrEnum):
    """Why a message stopped; logged as ``ws_filtered`` with this reason (duplicate is silent)."""

    CONNECTOR_DISABLED = "connector_disabled"
    DUPLICATE = "duplicate"
    BOT_MESSAGE_IGNORED = "bot_message_ignored"
    DM_DISABLED = "dm_disabled"
    GROUP_MESSAGE_DISABLED = "group_message_disabled"
    MENTION_REQUIRED = "mention_required"
    CHAT_NOT_ALLOWED = "chat_not_allowed"
    USER_NOT_WHITELISTED = "user_not_whitelisted"
    UNSUPPORTED_MESSAGE_TYPE = "unsupported_message_type"
    EMPTY_TEXT = "empty_text"
    PREFIX_NOT_MATCHED = "prefix_not_matched"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    allow_dm: bool = True
    allow_group_mention: bool = True
    mention_required: bool = True
    allowed_chat_ids: frozenset[str] = frozenset()
    user_whitelist: frozenset[str] = frozenset()
    ignore_bot_messages: bool = True
    prefix_command: str = ""


@dataclass(frozen=True, slots=True)
class Allowed:
    text: str  # normalised, prefix stripped


@dataclass(frozen=True, slots=True)
class Filtered:
    reason: FilterReason


def evaluate(settings: PolicySettings, event: MessageEvent, bot_open_id: str | None) -> Allowed | Filtered:
    """The connector's rules, in the seed's order; the first that fails names the reason."""
    if settings.ignore_bot_messages and event.sender_type != "user":
        return Filtered(FilterReason.BOT_MESSAGE_IGNORED)
    is_dm = event.chat_type == "p2p"
    if is_dm and not settings.allow_dm:
        return Filtered(FilterReason.DM_DISABLED)
    if not is_dm and not settings.allow_group_mention:
        return Filtered(FilterReason.GROUP_MESSAGE_DISABLED)
    # In a direct chat everything is addressed to the bot; in a group only what mentions it.
    if not is_dm and settings.mention_required and not mentions_bot(event, bot_open_id):
        return Filtered(FilterReason.MENTION_REQUIRED)
    if settings.allowed_chat_ids and event.chat_id not in settings.allowed_chat_ids:
        return Filtered(FilterReason.CHAT_NOT_ALLOWED)
    if settings.user_whitelist and not event.sender.matches_any(set(settings.user_whitelist)):
        return Filtered(FilterReason.USER_NOT_WHITELISTED)
    if event.message_type not in SUPPORTED_MESSAGE_TYPES:
        return Filtered(FilterReason.UNSUPPORTED_MESSAGE_TYPE)
    text = extract_text(event, bot_open_id)
    carries = bool(resources_of(event.message_type, event.content))  # an image or file: worth answering
    if not text and not (carries and not settings.prefix_command):
        return Filtered(FilterReason.EMPTY_TEXT)
    command = strip_prefix(text, settings.prefix_command)
    if command is None:
        return Filtered(FilterReason.PREFIX_NOT_MATCHED)
    if not command and not carries:
        return Filtered(FilterReason.EMPTY_TEXT)
    return Allowed(command)
