from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from echocenter.feishu.events import Mention, MessageEvent, UserIds
from echocenter.feishu.policy import Allowed, Filtered, FilterReason, PolicySettings, evaluate
from echocenter.feishu.text import strip_prefix
from tests.support.events import BOT, message


def test_a_plain_mention_in_a_group_is_allowed_with_the_placeholder_removed() -> None:
    assert evaluate(PolicySettings(), message(), BOT) == Allowed("hello")


def test_each_rule_names_its_reason() -> None:
    cases = [
        (PolicySettings(), message(sender_type="app"), FilterReason.BOT_MESSAGE_IGNORED),
        (
            PolicySettings(allow_dm=False),
            message("hi", chat_type="p2p", mention_bot=False),
            FilterReason.DM_DISABLED,
        ),
        (PolicySettings(allow_group_mention=False), message(), FilterReason.GROUP_MESSAGE_DISABLED),
        (PolicySettings(), message("hello", mention_bot=False), FilterReason.MENTION_REQUIRED),
        (PolicySettings(allowed_chat_ids=frozenset({"oc_other"})), message(), FilterReason.CHAT_NOT_ALLOWED),
        (PolicySettings(user_whitelist=frozenset({"ou_bob"})), message(), FilterReason.USER_NOT_WHITELISTED),
        (PolicySettings(), message(message_type="audio"), FilterReason.UNSUPPORTED_MESSAGE_TYPE),
        (PolicySettings(), message("@_user_1 \u00a0 "), FilterReason.EMPTY_TEXT),
        (PolicySettings(prefix_command="/bot"), message("@_user_1 hello"), FilterReason.PREFIX_NOT_MATCHED),
        (PolicySettings(prefix_command="/bot"), message("@_user_1 /bot"), FilterReason.EMPTY_TEXT),
    ]
    for settings, event, reason in cases:
        assert evaluate(settings, event, BOT) == Filtered(reason), reason


def test_bot_messages_pass_when_not_ignored() -> None:
    assert evaluate(PolicySettings(ignore_bot_messages=False), message(sender_type="app"), BOT) == Allowed(
        "hello"
    )


def test_direct_messages_need_no_mention() -> None:
    assert evaluate(PolicySettings(), message("status", chat_type="p2p", mention_bot=False), BOT) == Allowed(
        "status"
    )


def test_mention_of_someone_else_or_all_is_not_a_mention_of_the_bot() -> None:
    others = (Mention("@_user_1", UserIds("ou_bob"), "Bob"), Mention("@_all", UserIds(), "all"))
    event = message("@_user_1 @_all hi", mention_bot=False, mentions=others)
    assert evaluate(PolicySettings(), event, BOT) == Filtered(FilterReason.MENTION_REQUIRED)
    assert evaluate(PolicySettings(mention_required=False), event, BOT) == Allowed("@Bob @all hi")


def test_an_unknown_bot_identity_never_counts_as_mentioned() -> None:
    assert evaluate(PolicySettings(), message(), None) == Filtered(FilterReason.MENTION_REQUIRED)


def test_whitelist_matches_open_user_or_union_id() -> None:
    for entry in ("ou_alice", "alice", "on_alice"):
        assert isinstance(
            evaluate(PolicySettings(user_whitelist=frozenset({entry})), message(), BOT), Allowed
        )


def test_prefix_is_stripped_case_insensitively_and_as_a_whole_word() -> None:
    settings = PolicySettings(prefix_command="/bot")
    assert evaluate(settings, message("@_user_1 /BOT run x uptime"), BOT) == Allowed("run x uptime")
    assert evaluate(settings, message("@_user_1 /botany"), BOT) == Filtered(FilterReason.PREFIX_NOT_MATCHED)
    assert strip_prefix("anything", "") == "anything"


def test_broken_content_is_empty_text() -> None:
    assert evaluate(PolicySettings(), message(content="{broken"), BOT) == Filtered(FilterReason.EMPTY_TEXT)


ids = st.sampled_from(["ou_alice", "alice", "ou_bob", "oc_ops", "oc_dev"])
settings_strategy = st.builds(
    PolicySettings,
    allow_dm=st.booleans(),
    allow_group_mention=st.booleans(),
    mention_required=st.booleans(),
    allowed_chat_ids=st.frozensets(st.sampled_from(["oc_ops", "oc_dev"]), max_size=2),
    user_whitelist=st.frozensets(ids, max_size=3),
    ignore_bot_messages=st.booleans(),
    prefix_command=st.sampled_from(["", "/bot", "!"]),
)
events_strategy = st.builds(
    message,
    text=st.text(alphabet=st.sampled_from(list("ab /!@_user1\u00a0")), max_size=20),
    chat_type=st.sampled_from(["p2p", "group"]),
    mention_bot=st.booleans(),
    sender_type=st.sampled_from(["user", "app"]),
    chat_id=st.sampled_from(["oc_ops", "oc_dev"]),
    message_type=st.sampled_from(["text", "audio"]),
)


@given(settings_strategy, events_strategy)
def test_policy_agrees_with_its_specification(settings: PolicySettings, event: MessageEvent) -> None:
    result = evaluate(settings, event, BOT)
    is_dm = event.chat_type == "p2p"
    blocked_by_rule = (
        (settings.ignore_bot_messages and event.sender_type != "user")
        or (is_dm and not settings.allow_dm)
        or (not is_dm and not settings.allow_group_mention)
        or (not is_dm and settings.mention_required and not event.mentions)
        or (settings.allowed_chat_ids and event.chat_id not in settings.allowed_chat_ids)
        or (settings.user_whitelist and not event.sender.matches_any(set(settings.user_whitelist)))
        or event.message_type != "text"
    )
    if blocked_by_rule:
        assert isinstance(result, Filtered)
        assert result.reason not in (FilterReason.EMPTY_TEXT, FilterReason.PREFIX_NOT_MATCHED)
    elif isinstance(result, Allowed):
        assert result.text == result.text.strip() and result.text
        assert "@_user_1" not in result.text or not event.mentions
        assert "\u00a0" not in result.text
    else:
        assert result.reason in (FilterReason.EMPTY_TEXT, FilterReason.PREFIX_NOT_MATCHED)
