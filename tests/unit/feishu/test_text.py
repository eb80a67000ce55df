"""Text normalisation: what a person wrote, as plain text — content read, rich text flattened, the bot's
@-placeholder gone, spaces collapsed — and the command prefix."""

from __future__ import annotations

import json

import pytest

from echocenter.feishu.events import Mention, UserIds
from echocenter.feishu.text import Resource, extract_text, mentions_bot, resources_of, strip_prefix
from tests.support.events import BOT, message


def test_post_messages_are_flattened_without_the_bot() -> None:
    post = {
        "zh_cn": {
            "title": "Deploy",
            "content": [
                [
                    {"tag": "at", "user_id": "@_user_1", "user_name": "Bot"},
                    {"tag": "text", "text": " run "},
                    {"tag": "a", "text": "docs", "href": "https://x"},
                ],
                [{"tag": "at", "user_id": "@_user_2", "user_name": "Bob"}, {"tag": "text", "text": " fyi"}],
            ],
        }
    }
    mentions = (Mention("@_user_1", UserIds(BOT), "Bot"), Mention("@_user_2", UserIds("ou_bob"), "Bob"))
    event = message(message_type="post", content=json.dumps(post), mentions=mentions)
    assert extract_text(event, BOT) == "Deploy\nrun docs\n@Bob fyi"


def test_placeholders_do_not_eat_longer_ones() -> None:
    mentions = tuple(Mention(f"@_user_{i}", UserIds(f"ou_{i}"), f"U{i}") for i in range(1, 11))
    event = message("@_user_10 and @_user_1", mention_bot=False, mentions=mentions)
    assert extract_text(event, BOT) == "@U10 and @U1"


def test_spaces_tabs_and_no_break_spaces_collapse_and_lines_are_trimmed() -> None:
    event = message("@_user_1 \t run\u00a0\u00a0 x   uptime  \n\n   second\tline  \n")
    assert extract_text(event, BOT) == "run x uptime\n\nsecond line"


@pytest.mark.parametrize(
    ("message_type", "content"),
    [
        ("text", "{broken"),
        ("text", json.dumps({"text": 42})),
        ("text", json.dumps(["not", "an", "object"])),
        ("image", json.dumps({"image_key": "img_1"})),
        ("sticker", json.dumps({"file_key": "s_1"})),
    ],
)
def test_content_without_readable_text_is_empty(message_type: str, content: str) -> None:
    assert extract_text(message(message_type=message_type, content=content), BOT) == ""


def test_only_a_mention_of_the_bots_own_open_id_mentions_the_bot() -> None:
    everyone = (Mention("@_all", UserIds(), "all"),)
    assert mentions_bot(message(), BOT)
    assert not mentions_bot(message(mention_bot=False, mentions=everyone), BOT)
    assert not mentions_bot(message(), None)  # the bot's identity unknown: never a mention


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/bot run x", "run x"),
        ("/BOT   run x  ", "run x"),
        ("/bot", ""),
        ("/botany", None),
        ("please /bot run", None),
    ],
)
def test_the_prefix_is_a_whole_word_at_the_start_in_any_case(text: str, expected: str | None) -> None:
    assert strip_prefix(text, "/bot") == expected


def test_images_and_files_are_resources_and_text_has_none() -> None:
    assert resources_of("image", json.dumps({"image_key": "img_1"})) == [Resource("image", "img_1")]
    assert resources_of("file", json.dumps({"file_key": "f_1"})) == [Resource("file", "f_1", "file")]
    assert resources_of("text", json.dumps({"text": "hi"})) == []
    assert resources_of("image", "{broken") == []
