"""Pure rules for untrusted words: which commands may become a card, how cards and text replies show them,
and how callback rejections are throttled."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from echocenter.approvals.cards import approval_card
from echocenter.approvals.states import ApprovalStatus
from echocenter.butler.command_check import problem_with
from echocenter.db.models import Approval
from echocenter.db.types import utcnow
from echocenter.feishu.callback_guard import RejectionThrottle
from echocenter.feishu.untrusted import inert

# Everything Feishu's card markdown would read as markup (issue 10, point 5).
MARKUP = "**b** _i_ ~~s~~ `c` [l](https://evil.example) <at id=all></at> <font color='red'>r</font>\n# h"


@pytest.mark.parametrize(
    ("agent", "command", "refused"),
    [
        ("demo-agent", "uptime", False),
        ("a.b_c-1", "df -h /var | tail -n 1", False),
        ("demo-agent", "uptime\n**Reason** forged", True),
        ("demo-agent", "uptime\r", True),
        ("demo-agent", "uptime\x1b[31m", True),
        ("demo-agent", "uptime\u2028x", True),  # line separator
        ("demo-agent", "uptime\u200b", True),  # zero-width space (format)
        ("demo-agent", "   ", True),
        ("demo-agent", "x" * 1001, True),
        ("[demo-agent](https://evil.example)", "x", True),
        ("demo agent", "x", True),
        ("démo", "x", True),
        ("a" * 65, "x", True),
    ],
)
def test_which_commands_may_become_a_card(agent: str, command: str, refused: bool) -> None:
    assert (problem_with(agent, command) is not None) is refused


def test_inert_text_keeps_the_words_but_no_markup() -> None:
    shown = inert(MARKUP)
    for opener in ("<", ">", "[", "]", "**", "~~"):
        assert opener not in shown
    assert "evil.example" in shown and "font color" in shown


def _approval(status: ApprovalStatus, **values: Any) -> Approval:
    now = utcnow()
    return Approval(
        id=7,
        status=status.value,
        agent_name="demo-agent",
        command=MARKUP.replace("\n", " "),
        reason=MARKUP,
        requested_by_open_id="ou_alice",
        requested_by_name=MARKUP,
        created_at=now,
        expires_at=now + timedelta(minutes=5),
        **values,
    )


@pytest.mark.parametrize(
    "approval",
    [
        _approval(ApprovalStatus.PENDING),
        _approval(
            ApprovalStatus.FAILED,
            decided_by="admin:**x**",
            decided_at=utcnow(),
            decision_reason=MARKUP,
            output=MARKUP,
        ),
        _approval(ApprovalStatus.EXECUTED, decided_by="ou_alice", decided_at=utcnow(), output=MARKUP),
    ],
)
def test_cards_show_every_untrusted_value_as_plain_text(approval: Approval) -> None:
    card = approval_card(approval)
    for element in card["elements"]:
        if element["tag"] == "markdown":  # only markup built here: a mention of a checked open_id
            assert "evil" not in element["content"] and "**" not in element["content"]
            assert element["content"].count("<at id=") <= 1 and "<at id=all>" not in element["content"]
        elif element["tag"] == "div":
            assert element["text"]["tag"] == "plain_text"
    assert json.dumps(card).count("evil.example") >= 2  # still there, to be read as it is


def test_a_decision_by_a_person_mentions_them() -> None:
    card = approval_card(_approval(ApprovalStatus.REJECTED, decided_by="ou_alice", decided_at=utcnow()))
    assert any(e["tag"] == "markdown" and "<at id=ou_alice></at>" in e["content"] for e in card["elements"])


def test_rejections_are_admitted_once_per_interval_with_a_count() -> None:
    throttle = RejectionThrottle(interval_seconds=3600)
    assert throttle.admit(1, "bad signature") == 0
    assert [throttle.admit(1, "bad signature") for _ in range(5)] == [None] * 5
    assert throttle.admit(2, "bad signature") == 0  # per connector
    assert throttle.admit(1, "stale") == 0  # and per reason
    always = RejectionThrottle(interval_seconds=0)
    assert [always.admit(1, "x") for _ in range(3)] == [0, 0, 0]
