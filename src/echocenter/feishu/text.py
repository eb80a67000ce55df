"""What a person wrote, as plain text: content read, rich text flattened, the bot's @-placeholder gone."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from echocenter.feishu.events import MessageEvent

SUPPORTED_MESSAGE_TYPES = frozenset({"text", "post", "image", "file"})  # image/file: the Butler reads them
_SPACES = re.compile(r"[ \t]+")


def mentions_bot(event: MessageEvent, bot_open_id: str | None) -> bool:
    # @_all is not a mention of the bot; only a mention carrying the bot's own open_id is.
    return bool(bot_open_id) and any(m.ids.open_id == bot_open_id for m in event.mentions)


def _post_body(content: Any) -> dict[str, Any]:
    if isinstance(content, dict) and isinstance(content.get("content"), list):
        return content
    if isinstance(content, dict):  # {"zh_cn": {...}, "en_us": {...}}: the first locale that has content
        for value in content.values():
            if isinstance(value, dict) and isinstance(value.get("content"), list):
                return value
    return {}


def _flatten_post(content: Any, names: dict[str, str | None]) -> str:
    post = _post_body(content)
    lines = [str(post["title"])] if isinstance(post.get("title"), str) and post["title"] else []
    for paragraph in post.get("content", []):
        if not isinstance(paragraph, list):
            continue
        pieces: list[str] = []
        for element in paragraph:
            if not isinstance(element, dict):
                continue
            tag = element.get("tag")
            if tag in ("text", "a", "code_block", "md"):
                pieces.append(str(element.get("text", "")))
            elif tag == "at":
                key = str(element.get("user_id", ""))
                name = names.get(key, element.get("user_name") or key)
                if name is not None:  # None: the bot itself, left out
                    pieces.append(f"@{name}")
        lines.append("".join(pieces))
    return "\n".join(lines)


def extract_text(event: MessageEvent, bot_open_id: str | None) -> str:
    """Plain text of a text or post message ('' when there is none)."""
    # key -> display name; None for the bot, whose placeholder is removed rather than shown.
    names: dict[str, str | None] = {
        m.key: (None if bot_open_id and m.ids.open_id == bot_open_id else m.name or m.key)
        for m in event.mentions
    }
    try:
        content = json.loads(event.content) if event.content else {}
    except ValueError:
        return ""
    if event.message_type == "text":
        text = content.get("text", "") if isinstance(content, dict) else ""
        text = text if isinstance(text, str) else ""
        # Longest keys first, so @_user_1 never eats the start of @_user_10.
        for key in sorted(names, key=len, reverse=True):
            if key:
                name = names[key]
                text = text.replace(key, "" if name is None else f"@{name}")
    elif event.message_type == "post":
        text = _flatten_post(content, names)
    else:
        return ""
    lines = _SPACES.sub(" ", text.replace("\u00a0", " ")).split("\n")
    return "\n".join(line.strip() for line in lines).strip()


def strip_prefix(text: str, prefix: str) -> str | None:
    """The text after ``prefix`` (case-insensitive, whole word), or None when it does not start with it."""
    if not prefix:
        return text
    if not text.lower().startswith(prefix.lower()):
        return None
    rest = text[len(prefix) :]
    if rest and not rest[0].isspace():
        return None  # "/botany" does not start with the command "/bot"
    return rest.strip()


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str  # "image" | "file"
    key: str
    name: str = ""


def resources_of(message_type: str, content: str) -> list[Resource]:
    """The images and files a message carries (none for plain text)."""
    try:
        data: Any = json.loads(content) if content else {}
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    if message_type == "image" and isinstance(data.get("image_key"), str):
        return [Resource("image", data["image_key"])]
    if message_type == "file" and isinstance(data.get("file_key"), str):
        return [Resource("file", data["file_key"], str(data.get("file_name") or "file"))]
    if message_type == "post":
        found = []
        for paragraph in _post_body(data).get("content", []):
            for element in paragraph if isinstance(paragraph, list) else []:
                if isinstance(element, dict) and element.get("tag") == "img":
                    key = element.get("image_key")
                    if isinstance(key, str) and key:
                        found.append(Resource("image", key))
        return found
    return []
