"""Issue 10, points 9 (NUL), 10 (headers, /static, /docs), 15 (integral floats): over HTTP, both databases."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import Server

NUL = "\x00"
CONNECTOR = {"connector_name": "Ops", "approvers": ["ou_alice"]}


async def _connector_id(server: Server) -> int:
    created = await server.client.post("/api/integrations/feishu", json=CONNECTOR)
    assert created.status_code == 201, created.text
    connector_id: int = created.json()["id"]
    return connector_id


# (method, path, JSON body or None, query or None, the field the error must name)
NUL_REQUESTS: list[tuple[str, str, Any, dict[str, str] | None, str]] = [
    ("POST", "/api/users", {"username": f"eve{NUL}", "password": "member-password-1"}, None, "username"),
    ("POST", "/api/integrations/feishu", {"connector_name": f"Ops{NUL}"}, None, "connector_name"),
    (
        "POST",
        "/api/integrations/feishu",
        {"connector_name": "Ops", "allowed_chat_ids": ["oc_ok", f"oc_{NUL}"]},
        None,
        "allowed_chat_ids[1]",
    ),
    ("PATCH", "/api/integrations/feishu/{id}", {"prefix_command": f"/b{NUL}"}, None, "prefix_command"),
    ("POST", "/api/integrations/feishu/{id}/test-message", {"text": f"hi{NUL}"}, None, "text"),
    ("GET", "/api/integrations/feishu/{id}/logs", None, {"action": f"x{NUL}"}, "action"),
    ("POST", "/api/agents", {"name": f"agent{NUL}"}, None, "name"),
    ("POST", "/api/approvals/1/decision", {"decision": "reject", "reason": f"no{NUL}"}, None, "reason"),
]


@pytest.mark.parametrize(("method", "path", "body", "query", "field"), NUL_REQUESTS)
async def test_a_nul_in_any_text_field_is_a_422_naming_the_field(
    server: Server, method: str, path: str, body: Any, query: dict[str, str] | None, field: str
) -> None:
    connector_id = await _connector_id(server)
    response = await server.client.request(
        method, path.replace("{id}", str(connector_id)), json=body, params=query
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == [{"field": field, "message": "must not contain a NUL character (U+0000)"}]
    # Nothing was stored, and the service carries on.
    listed = (await server.client.get("/api/integrations/feishu")).json()["items"]
    assert [c["connector_name"] for c in listed] == ["Ops"]
    assert [u["username"] for u in (await server.client.get("/api/users")).json()] == ["admin"]


async def test_a_nul_in_the_login_username_is_refused_before_authentication(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        for username in (f"admin{NUL}", NUL, f"{NUL}admin"):
            response = await anonymous.post(
                "/api/auth/login", json={"username": username, "password": "whatever-password"}
            )
            assert response.status_code == 422, response.text
            assert response.json()["error"]["fields"][0]["field"] == "username"
        # Sent as raw JSON with the escape, as the review did.
        raw = await anonymous.post(
            "/api/auth/login",
            content=b'{"username": "a\\u0000b", "password": "x"}',
            headers={"content-type": "application/json"},
        )
        assert raw.status_code == 422, raw.text
        assert raw.json()["error"]["code"] == "validation_error"
    await server.login("admin", "admin-password-1")  # and the real admin still logs in


async def test_a_nul_in_a_json_object_key_is_refused(server: Server) -> None:
    response = await server.client.post("/api/integrations/feishu", json={f"connector{NUL}": "x"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == "connector\\u0000"


async def test_integral_floats_are_integers_as_json_schema_says(server: Server) -> None:
    created = await server.client.post(
        "/api/integrations/feishu", json={**CONNECTOR, "rate_limit_per_minute": 153.0}
    )
    assert created.status_code == 201, created.text
    assert created.json()["rate_limit_per_minute"] == 153
    for refused in (153.5, "153", True):
        response = await server.client.patch(
            f"/api/integrations/feishu/{created.json()['id']}", json={"rate_limit_per_minute": refused}
        )
        assert response.status_code == 422, (refused, response.text)


def _assert_not_frameable(response: httpx.Response) -> None:
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


async def test_every_html_page_carries_the_security_headers(server: Server) -> None:
    for path in ("/", "/docs"):
        response = await server.client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        _assert_not_frameable(response)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy


async def test_api_answers_and_assets_carry_them_too(server: Server) -> None:
    for path in ("/api/health", "/api/nowhere", "/static/app.js", "/openapi.json"):
        response = await server.client.get(path)
        _assert_not_frameable(response)
    assert (
        (await server.client.get("/api/health"))
        .headers["content-security-policy"]
        .startswith("default-src 'none'")
    )


async def test_the_admin_app_is_served_only_at_the_root(server: Server) -> None:
    for path in ("/static/index.html", "/static/INDEX.HTML", "/static/", "/static"):
        response = await server.client.get(path, follow_redirects=True)
        assert response.status_code == 404, (path, response.status_code)
        assert "login-form" not in response.text
    assert (await server.client.get("/static/app.js")).status_code == 200
    assert (await server.client.get("/static/app.css")).status_code == 200


async def test_docs_load_nothing_from_another_origin(server: Server) -> None:
    page = await server.client.get("/docs")
    assert page.status_code == 200
    assert "<script>" not in page.text  # no inline script: the policy would refuse it
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    for url in urls:
        asset = await server.client.get(url)
        assert asset.status_code == 200, url
        assert asset.content
    start = (await server.client.get("/docs/start.js")).text
    assert '"/openapi.json"' in start and "validatorUrl: null" in start
    # FastAPI's CDN-loading pages are off, the spec itself stays
    assert (await server.client.get("/redoc")).status_code == 404
    assert (await server.client.get("/docs/oauth2-redirect")).status_code == 404
    assert (await server.client.get("/docs/assets/index.html")).status_code == 404
    assert (await server.client.get("/openapi.json")).json()["openapi"].startswith("3.")
