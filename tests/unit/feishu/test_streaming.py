"""Pure parts of issue 14: markdown from the model made inert, images and files found in messages and let
through the policy, the streaming card's shape."""

from __future__ import annotations

import asyncio
import json
import time

from echocenter.feishu.attachments import image_type
from echocenter.feishu.openapi import FeishuError
from echocenter.feishu.policy import Allowed, Filtered, FilterReason, PolicySettings, evaluate
from echocenter.feishu.streaming import (
    CARD_TEXT_LIMIT_BYTES,
    ELEMENT_ID,
    MORE_BELOW,
    Pace,
    _is_refusal,
    split_for_card,
    streaming_card,
)
from echocenter.feishu.text import Resource, resources_of
from echocenter.feishu.untrusted import inert_markdown
from tests.support.events import BOT, message


def test_model_markdown_keeps_formatting_but_no_mentions_or_disguised_links() -> None:
    text = '**bold** `code` <at id="all"></at> [docs](https://evil.example) ![x](img_1) https://ok.example'
    inert = inert_markdown(text)
    assert "**bold**" in inert and "`code`" in inert and "https://ok.example" in inert
    assert "<" not in inert and "[" not in inert and "]" not in inert


def test_the_streaming_card_is_card_json_2_with_a_named_markdown_element() -> None:
    card = streaming_card("<at id=all></at> hi")
    assert card["schema"] == "2.0" and card["config"]["streaming_mode"] is True
    assert card["config"]["update_multi"] is True
    [element] = card["body"]["elements"]
    assert element["tag"] == "markdown" and element["element_id"] == ELEMENT_ID
    assert "<at" not in element["content"]


def test_images_files_and_post_images_are_found() -> None:
    assert resources_of("image", json.dumps({"image_key": "img_1"})) == [Resource("image", "img_1")]
    assert resources_of("file", json.dumps({"file_key": "f_1", "file_name": "a.txt"})) == [
        Resource("file", "f_1", "a.txt")
    ]
    post = {
        "zh_cn": {
            "title": "",
            "content": [[{"tag": "text", "text": "see"}], [{"tag": "img", "image_key": "i"}]],
        }
    }
    assert resources_of("post", json.dumps(post)) == [Resource("image", "i")]
    assert resources_of("text", json.dumps({"text": "hi"})) == []
    assert resources_of("image", "not json") == []


def test_an_image_in_a_direct_chat_is_let_through_without_text() -> None:
    image = message(
        chat_type="p2p", mention_bot=False, message_type="image", content=json.dumps({"image_key": "k"})
    )
    assert evaluate(PolicySettings(), image, BOT) == Allowed("")
    # with a prefix command only prefixed text is answered: an image alone has none
    assert evaluate(PolicySettings(prefix_command="/bot"), image, BOT) == Filtered(FilterReason.EMPTY_TEXT)
    empty = message(chat_type="p2p", mention_bot=False, message_type="image", content=json.dumps({}))
    assert evaluate(PolicySettings(), empty, BOT) == Filtered(FilterReason.EMPTY_TEXT)


def test_images_are_recognised_by_their_bytes() -> None:
    assert image_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert image_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert image_type(b"RIFF1234WEBPVP8 ") == "image/webp"
    assert image_type(b"<svg onload=alert(1)>") is None


async def test_a_shared_pace_spaces_every_caller() -> None:
    pace = Pace(0.05)
    times: list[float] = []

    async def call() -> None:
        await pace.wait()
        times.append(time.monotonic())

    start = time.monotonic()
    await asyncio.gather(*(call() for _ in range(4)))  # four callers at once: one slot each
    # The k-th caller's slot is k intervals after the first, and a sleep never returns early. (Gaps between
    # wake-ups are not compared: on a busy machine one late wake-up shortens the gap after it.)
    late_enough = [t - start >= k * 0.05 - 0.001 for k, t in enumerate(sorted(times))]
    assert all(late_enough), [round(t - start, 3) for t in sorted(times)]


def test_only_a_refusal_turns_cardkit_off_for_a_connector() -> None:
    no_scope = FeishuError("api", "denied", feishu_code=99991672, http_status=400)
    assert _is_refusal(no_scope)
    assert not _is_refusal(FeishuError("api", "busy", feishu_code=1, http_status=500))
    assert not _is_refusal(FeishuError("api", "slow down", feishu_code=99991400, http_status=429))
    assert not _is_refusal(FeishuError("network", "unreachable"))


def test_an_answer_longer_than_a_card_is_split_at_a_line_end_within_the_limit() -> None:
    text = "\n".join("<" * 50 for _ in range(400))  # made inert, each "<" takes 3 bytes
    shown, rest = split_for_card(text)
    assert len(inert_markdown(shown).encode()) <= CARD_TEXT_LIMIT_BYTES
    assert shown.endswith("…") and shown.removesuffix(MORE_BELOW).endswith("<")
    assert shown.removesuffix(MORE_BELOW) + "\n" + rest == text
    assert split_for_card("short") == ("short", "")
