"""The doctor's reading of Feishu's answers: scopes named in a 99991672, and a fix for each common code."""

from __future__ import annotations

import pytest

from echocenter.feishu.doctor import fix_for, missing_scopes


def test_scopes_come_from_permission_violations_first() -> None:
    body = {"error": {"permission_violations": [{"subject": "okr:okr"}, {"subject": "okr:okr"}]}}
    assert missing_scopes("Access denied. [ignored]", body) == ["okr:okr"]


def test_scopes_are_read_from_the_message_when_the_body_has_none() -> None:
    msg = "Access denied. One of the following scopes is required: [im:message, im:message:send_as_bot]."
    assert missing_scopes(msg) == ["im:message", "im:message:send_as_bot"]
    assert "im:message, im:message:send_as_bot" in (fix_for(99991672, msg) or "")
    assert "the scope named in Feishu's message" in (fix_for(99991672, "permission denied") or "")


@pytest.mark.parametrize("code", [10003, 10014, 99991663, 99991672, 99991400, 230002, 230020, 1000040350])
def test_every_code_of_the_troubleshooting_table_has_a_fix(code: int) -> None:
    assert fix_for(code)


def test_unknown_codes_have_no_invented_fix() -> None:
    assert fix_for(123456) is None and fix_for(None) is None
