"""A local HTTP server playing Feishu's tenant_access_token endpoint, switchable between outcomes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

VALID_APP_ID = "cli_a1b2c3d4e5f6"
VALID_APP_SECRET = "s3cr3tS3cr3tS3cr3tS3cr3tS3cr3tXY"


@dataclass
class FakeFeishuAuth:
    mode: str = "real"  # real | http_500 | slow | garbage | no_token
    slow_seconds: float = 2.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def token(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        self.requests.append(body)
        if self.mode == "http_500":
            return PlainTextResponse("upstream exploded", status_code=500)
        if self.mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if self.mode == "garbage":
            return PlainTextResponse("<html>definitely not json</html>")
        if self.mode == "no_token":
            return JSONResponse({"code": 0, "msg": "ok"})
        if body.get("app_id") != VALID_APP_ID:
            return JSONResponse({"code": 10003, "msg": "invalid param"})
        if body.get("app_secret") != VALID_APP_SECRET:
            return JSONResponse({"code": 10014, "msg": "app secret invalid"})
        return JSONResponse({"code": 0, "msg": "ok", "tenant_access_token": "t-fake-token", "expire": 7200})

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/open-apis/auth/v3/tenant_access_token/internal", self.token, methods=["POST"])]
        )
