"""Feishu Open API calls. Today: the tenant token (credential verification); the full client grows here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

TENANT_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"

# Feishu codes a person can act on, in words (the raw code and msg are always shown too).
_CODE_HINTS = {
    10003: "the App ID is not valid",
    10014: "the App Secret is not valid for this App ID",
    10015: "the App Secret is not valid for this App ID",
}


@dataclass(slots=True)
class FeishuError(Exception):
    """A failed Feishu call. ``kind`` is one of timeout, network, http, bad_response, api."""

    kind: str
    message: str
    feishu_code: int | None = None
    feishu_msg: str | None = None
    http_status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def detail(self) -> dict[str, Any]:
        return {
            "error_kind": self.kind,
            "feishu_code": self.feishu_code,
            "feishu_msg": self.feishu_msg,
            "http_status": self.http_status,
        }


@dataclass(frozen=True, slots=True)
class TenantToken:
    token: str
    expire_seconds: int


async def request_tenant_token(
    http: httpx.AsyncClient, *, base_url: str, app_id: str, app_secret: str, timeout: float
) -> TenantToken:
    """POST tenant_access_token/internal. Raises FeishuError for every outcome but a code-0 token."""
    url = base_url.rstrip("/") + TENANT_TOKEN_PATH
    try:
        response = await http.post(url, json={"app_id": app_id, "app_secret": app_secret}, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise FeishuError("timeout", f"Feishu did not answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise FeishuError("network", f"cannot reach Feishu at {base_url} ({type(exc).__name__})") from exc

    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if response.is_error:
            raise FeishuError(
                "http", f"Feishu answered HTTP {response.status_code}", http_status=response.status_code
            )
        raise FeishuError(
            "bad_response",
            "Feishu's answer is not the JSON object expected",
            http_status=response.status_code,
        )

    code, msg = body.get("code"), body.get("msg")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    msg = msg if isinstance(msg, str) else None
    if code is None:
        if response.is_error:
            raise FeishuError(
                "http", f"Feishu answered HTTP {response.status_code}", http_status=response.status_code
            )
        raise FeishuError("bad_response", "Feishu's answer has no code", http_status=response.status_code)
    if code != 0:
        hint = _CODE_HINTS.get(code, "Feishu refused the request")
        raise FeishuError(
            "api",
            f"{hint}: {msg or 'no message'} (code {code})",
            feishu_code=code,
            feishu_msg=msg,
            http_status=response.status_code,
        )
    token, expire = body.get("tenant_access_token"), body.get("expire")
    if not isinstance(token, str) or not token:
        raise FeishuError(
            "bad_response", "Feishu answered code 0 but sent no tenant_access_token", feishu_code=0
        )
    return TenantToken(token=token, expire_seconds=expire if isinstance(expire, int) else 0)
