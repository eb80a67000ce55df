"""The OpenAPI document is the truth: schemathesis over every operation of the running service finds no 5xx
and no answer the document does not describe; undocumented methods get 405."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from echocenter.app import create_app
from echocenter.auth.deps import CurrentAdmin
from tests.conftest import Server, make_settings
from tests.support.databases import Database
from tests.support.live import serve

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
# What the document promises: no server error, only declared statuses, content types, headers and bodies, and
# 405 with Allow for undeclared methods. Stricter opinions (positive_data_acceptance: "every schema-valid body
# is accepted") are left out: a blank name after trimming is refused on purpose, as documented by its 422.
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,unsupported_method,allow_header_conformance"
)
MAX_EXAMPLES = 6  # per operation: with the coverage phase ~1200 requests, ~15 s per database


async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    server: Server, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"Authorization:{server.client.headers['Authorization']}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261129",
        "--generation-deterministic",  # derandomized, and no example database between runs
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--output-sanitize",
        "true",
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert "generated" in report, report  # it did run cases


def _fill(path: str) -> str:
    parts = [("1" if part.startswith("{") else part) for part in path.split("/")]
    return "/".join(parts)


async def test_every_undocumented_method_is_405_with_allow(server: Server) -> None:
    spec: dict[str, Any] = (await server.client.get("/openapi.json")).json()
    wrong: list[str] = []
    for path, operations in spec["paths"].items():
        documented = {m for m in operations if m in HTTP_METHODS}
        for method in set(HTTP_METHODS) - documented:
            response = await server.client.request(method.upper(), _fill(path), json={})
            allowed = {m.strip().lower() for m in response.headers.get("allow", "").split(",")}
            if response.status_code != 405 or not documented <= allowed:
                wrong.append(f"{method.upper()} {path}: {response.status_code} allow={allowed}")
            else:
                assert response.json()["error"]["code"] == "method_not_allowed"
    assert not wrong, wrong


@pytest.mark.parametrize("path", ["/api/integrations/feishu/callback", "/api/integrations/feishu/callback/1"])
async def test_patch_on_the_callback_is_405_not_422(server: Server, path: str) -> None:
    response = await server.client.patch(path, json={"connector_name": "x"})
    assert response.status_code == 405, response.text
    assert "POST" in response.headers["allow"]


async def test_a_route_added_later_documents_its_errors_without_a_line_of_its_own(
    database: Database, tmp_path: Path
) -> None:
    app = create_app(make_settings(database, tmp_path))
    widgets = APIRouter(prefix="/api/widgets")

    @widgets.patch("/{widget_id}")
    async def rename(widget_id: int, body: dict[str, str], _: CurrentAdmin) -> dict[str, str]:
        return body

    app.include_router(widgets)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        spec = (await client.get("/openapi.json")).json()
    responses = spec["paths"]["/api/widgets/{widget_id}"]["patch"]["responses"]
    assert set(responses) == {"200", "400", "401", "403", "404", "413", "422"}
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for code in set(responses) - {"200"}:
        assert responses[code]["content"]["application/json"]["schema"] == error_body, code
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {"error"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's 422 body is not ours


async def test_the_callback_documents_what_feishu_posts(server: Server) -> None:
    spec = (await server.client.get("/openapi.json")).json()
    for path in ("/api/integrations/feishu/callback", "/api/integrations/feishu/callback/{connector_id}"):
        operation = spec["paths"][path]["post"]
        kinds = operation["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
        assert [k["title"] for k in kinds] == ["Encrypted callback", "URL verification", "Event (schema 2.0)"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert headers == {"X-Lark-Signature", "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce"}
        assert {"200", "400", "401", "413", "422"} <= set(operation["responses"])
