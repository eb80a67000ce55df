"""errors.py's tree is mapped to HTTP once: each base class answers with its status and the one error shape,
through the real app over HTTP (a route added for the test raises it), and real routes raise the tree."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from echocenter import errors
from echocenter.app import create_app
from echocenter.feishu.openapi import FeishuError
from echocenter.feishu.outbound import OutboundError
from tests.conftest import ADMIN_PASS, ADMIN_USER, make_settings
from tests.support.databases import fresh_database
from tests.support.live import serve

# name -> (what the route raises, status, code, the message shown: None when it must stay hidden)
CASES: dict[str, tuple[errors.EchoCenterError, int, str, str | None]] = {
    "root": (errors.EchoCenterError("db password is hunter2"), 500, "internal_error", None),
    "invalid": (errors.InvalidRequest("bad cursor", field="cursor"), 400, "invalid_request", "bad cursor"),
    "unauthenticated": (errors.NotAuthenticated("who are you"), 401, "not_authenticated", "who are you"),
    "denied": (errors.PermissionDenied("admins only"), 403, "permission_denied", "admins only"),
    "missing": (errors.NotFound("no such thing"), 404, "not_found", "no such thing"),
    "conflict": (errors.Conflict("taken"), 409, "conflict", "taken"),
    "unverified": (
        errors.ConnectorNotVerified("verify first"),
        409,
        "connector_not_verified",
        "verify first",
    ),
    "too_large": (errors.PayloadTooLarge("too big"), 413, "payload_too_large", "too big"),
    "too_many": (errors.TooManyRequests("slow down", retry_after=7), 429, "too_many_requests", "slow down"),
    "malformed": (errors.MalformedData("secret bytes"), 500, "internal_error", None),
    "upstream": (errors.UpstreamError("token t-123 refused"), 500, "internal_error", None),
    "feishu": (FeishuError("api", "Feishu answered no", feishu_code=1), 500, "internal_error", None),
    "outbound": (OutboundError("not sent within 1 s"), 409, "conflict", "not sent within 1 s"),
}


@pytest.fixture
async def raising_app(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with fresh_database("sqlite", tmp_path) as database:
        app = create_app(make_settings(database, tmp_path))

        async def raise_it(name: str) -> None:
            raise CASES[name][0]

        app.add_api_route("/test-only/raise/{name}", raise_it)
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield client


async def test_each_base_class_answers_with_its_status_and_the_one_error_shape(
    raising_app: httpx.AsyncClient,
) -> None:
    for name, (exc, status, code, message) in CASES.items():
        response = await raising_app.get(f"/test-only/raise/{name}")
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert set(body) == {"error"}, name
        assert body["error"]["code"] == code, name
        if message is None:  # a 500 never shows what went wrong inside
            assert body["error"] == {"code": "internal_error", "message": "internal error"}, name
        else:
            assert body["error"]["message"] == message, name
        assert ("fields" in body["error"]) == (exc.field is not None), name
    fields = (await raising_app.get("/test-only/raise/invalid")).json()["error"]["fields"]
    assert fields == [{"field": "cursor", "message": "bad cursor"}]
    assert (await raising_app.get("/test-only/raise/too_many")).headers["retry-after"] == "7"
    assert (await raising_app.get("/test-only/raise/unauthenticated")).headers["www-authenticate"] == "Bearer"


async def test_real_routes_raise_the_tree_and_get_the_same_shape(raising_app: httpx.AsyncClient) -> None:
    anonymous = await raising_app.get("/api/integrations/feishu")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "not_authenticated"
    login = await raising_app.post("/api/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASS})
    raising_app.headers["Authorization"] = f"Bearer {login.json()['token']}"
    missing = await raising_app.get("/api/integrations/feishu/999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    created = await raising_app.post("/api/integrations/feishu", json={"connector_name": "c"})
    assert created.status_code == 201, created.text
    connector = f"/api/integrations/feishu/{created.json()['id']}"
    unverifiable = await raising_app.post(f"{connector}/verify-callback")
    assert unverifiable.status_code == 400
    assert unverifiable.json()["error"]["code"] == "invalid_request"
    assert unverifiable.json()["error"]["fields"][0]["field"] == "app_id"
    unverified = await raising_app.patch(f"{connector}/enable", json={"enabled": True})
    assert unverified.status_code == 409 and unverified.json()["error"]["code"] == "connector_not_verified"
    nowhere = await raising_app.post(f"{connector}/test-message", json={"text": "hi"})
    assert nowhere.status_code == 409 and nowhere.json()["error"]["code"] == "conflict"
    assert nowhere.json()["error"]["fields"][0]["field"] == "chat_id"
