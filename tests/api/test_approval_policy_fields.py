"""The connector's approval policy fields (issue 12): defaults, validation with the usual error body, and
their round trip through create and PATCH."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Server

BASE = "/api/integrations/feishu"


async def test_new_connectors_have_four_eyes_one_approval_and_chat_delivery(server: Server) -> None:
    created = await server.client.post(BASE, json={"connector_name": "Ops"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["allow_self_approval"], body["approvals_required"]) == (False, 1)
    assert (body["escalation_approvers"], body["approval_delivery"]) == ([], "chat")
    changed = await server.client.patch(
        f"{BASE}/{body['id']}",
        json={
            "allow_self_approval": True,
            "approvals_required": 3,
            "escalation_approvers": [" ou_erin ", "ou_erin", "ou_frank"],
            "approval_delivery": "both",
        },
    )
    assert changed.status_code == 200, changed.text
    now = (await server.client.get(f"{BASE}/{body['id']}")).json()
    assert (now["allow_self_approval"], now["approvals_required"], now["approval_delivery"]) == (
        True,
        3,
        "both",
    )
    assert now["escalation_approvers"] == ["ou_erin", "ou_frank"]  # trimmed, duplicates dropped


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("approvals_required", 0),
        ("approvals_required", 6),
        ("approvals_required", "2"),
        ("approval_delivery", "email"),
        ("allow_self_approval", "yes"),
        ("escalation_approvers", ["  "]),
    ],
)
async def test_bad_policy_values_are_refused_next_to_their_field(
    server: Server, field: str, value: Any
) -> None:
    response = await server.client.post(BASE, json={"connector_name": "Ops", field: value})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] and any(f["field"].startswith(field) for f in error["fields"]), error
    assert (await server.client.get(BASE)).json()["items"] == []  # nothing half-created
