"""Feishu Open API: the tenant-token request (credential verification) and the per-app client."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from echocenter import metrics
from echocenter.errors import UpstreamError

TENANT_TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"

# Feishu codes a person can act on, in words (the raw code and msg are always shown too).
_CODE_HINTS = {
    10003: "the App ID is not valid",
    10014: "the App Secret is not valid for this App ID",
    10015: "the App Secret is not valid for this App ID",
}


class FeishuError(UpstreamError):
    """A failed Feishu call. ``kind`` is one of timeout, network, http, bad_response, api."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        feishu_code: int | None = None,
        feishu_msg: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.feishu_code = feishu_code
        self.feishu_msg = feishu_msg
        self.http_status = http_status
        self.extra: dict[str, Any] = {}

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

    body = _json_object(response)
    if body is None:
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


# Codes that mean "get a new tenant token and try again".
TOKEN_INVALID_CODES = frozenset({99991661, 99991663, 99991668})
RATE_LIMIT_CODES = frozenset({99991400, 230020})  # app/API frequency limit; per-chat send limit
TOKEN_EARLY_REFRESH_SECONDS = 300
# Codes that mean "these credentials are wrong": reload them from the database instead of retrying.
CREDENTIAL_REFUSED_CODES = frozenset({10003, 10014, 10015})
# After a refusal the stored credentials were reloaded and are still refused: every send within this
# window fails at once (no token request per send); new credentials replace the whole client anyway.
REFUSAL_HOLD_SECONDS = 30.0

CredentialsLoader = Callable[[], Awaitable[tuple[str, str] | None]]


def _refusal(response: httpx.Response, body: dict[str, Any] | None) -> tuple[FeishuError, bool]:
    """The error for an answer that is not a code-0 success (counted in the metrics), and whether a retry
    may help (5xx, 429, a rate-limit code)."""
    code = body.get("code") if body is not None else None
    msg = body.get("msg") if body is not None else None
    error = FeishuError(
        "api" if isinstance(code, int) else "http",
        f"Feishu answered {msg or 'an error'} (HTTP {response.status_code}, code {code})",
        feishu_code=code if isinstance(code, int) else None,
        feishu_msg=msg if isinstance(msg, str) else None,
        http_status=response.status_code,
    )
    metrics.feishu_failure(
        error.feishu_code,
        refusal=response.status_code == 429 or code in RATE_LIMIT_CODES,
        http_status=response.status_code,
    )
    reset = response.headers.get("x-ogw-ratelimit-reset")
    if reset is not None:
        error.extra["ratelimit_reset"] = reset
    return error, response.status_code >= 500 or response.status_code == 429 or code in RATE_LIMIT_CODES


class OpenApiClient:
    """One app's Open API client: cached tenant token, retries with backoff on 5xx and rate limits.

    Callers pass Feishu's ``uuid`` in the body of every create, so a retry can never send twice.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        app_id: str,
        app_secret: str,
        timeout: float = 10.0,
        max_attempts: int = 4,
        max_wait: float = 10.0,
        reload_credentials: CredentialsLoader | None = None,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._app_id = app_id
        self._app_secret = app_secret
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_wait = max_wait
        self._token: str | None = None
        self._token_valid_until = 0.0
        self._token_lock = asyncio.Lock()
        self._reload_credentials = reload_credentials
        self._refused: tuple[FeishuError, float] | None = None  # the refusal, and until when it stands
        self.requests_sent = 0  # every HTTP request, token requests included (a test counts them)

    async def tenant_token(self, *, force: bool = False) -> str:
        async with self._token_lock:
            if not force and self._token and time.monotonic() < self._token_valid_until:
                return self._token
            metrics.TOKEN_REFRESHES.inc()
            if self._refused is not None and time.monotonic() < self._refused[1]:
                raise self._refused[0]
            try:
                token = await self._request_token()
            except FeishuError as exc:
                if exc.feishu_code not in CREDENTIAL_REFUSED_CODES or self._reload_credentials is None:
                    raise
                fresh = await self._reload_credentials()
                if fresh is None or fresh == (self._app_id, self._app_secret):
                    self._refused = (exc, time.monotonic() + REFUSAL_HOLD_SECONDS)
                    raise
                self._app_id, self._app_secret = fresh  # rotated elsewhere: one try with the stored ones
                token = await self._request_token()
            self._refused = None
            self._token = token.token
            lifetime = token.expire_seconds or 3600
            self._token_valid_until = time.monotonic() + max(30, lifetime - TOKEN_EARLY_REFRESH_SECONDS)
            return self._token

    async def _request_token(self) -> TenantToken:
        self.requests_sent += 1
        return await request_tenant_token(
            self._http,
            base_url=self._base_url,
            app_id=self._app_id,
            app_secret=self._app_secret,
            timeout=self._timeout,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        """The ``data`` of a code-0 answer (or the whole body when there is none). Raises FeishuError.

        ``attempts`` overrides the client's retries (the outbox retries durably itself: attempts=1).
        """
        max_attempts = attempts or self._max_attempts
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = await self.tenant_token()
            try:
                response = await self._send(method, path, token, json=json, params=params)
            except FeishuError:  # nothing answered (timeout, network)
                if attempt >= max_attempts:
                    raise
                await asyncio.sleep(self._delay(attempt, None))
                continue
            body = _json_object(response)
            code = body.get("code") if body is not None else None
            if code in TOKEN_INVALID_CODES and not refreshed:
                refreshed = True
                await self.tenant_token(force=True)
                attempt -= 1  # a token refresh is not a failed attempt
                continue
            if code == 0 and response.is_success:
                data = body.get("data") if body is not None else None
                return data if isinstance(data, dict) else (body or {})
            error, retryable = _refusal(response, body)
            if not retryable or attempt >= max_attempts:
                raise error
            await asyncio.sleep(self._delay(attempt, error.extra.get("ratelimit_reset")))

    async def _send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        json: dict[str, Any] | None,
        params: dict[str, str] | None,
    ) -> httpx.Response:
        """One HTTP request. FeishuError (timeout, network) when nothing answered."""
        self.requests_sent += 1
        try:
            return await self._http.request(
                method,
                self._base_url + path,
                json=json,
                params=params,
                timeout=self._timeout,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:  # one arm for both: they differ only in words
            timed_out = isinstance(exc, httpx.TimeoutException)
            kind = "timeout" if timed_out else "network"
            message = (
                f"Feishu did not answer within {self._timeout:g} s"
                if timed_out
                else f"cannot reach Feishu ({type(exc).__name__})"
            )
            metrics.feishu_failure(None, refusal=False, kind=kind)
            raise FeishuError(kind, message) from exc

    async def download(self, path: str, *, params: dict[str, str], max_bytes: int) -> tuple[bytes, str]:
        """A binary resource (e.g. a message's image or file) and its Content-Type, read at most
        ``max_bytes`` + 1 bytes far (the caller refuses anything longer). Raises FeishuError."""
        token = await self.tenant_token()
        self.requests_sent += 1
        try:
            async with self._http.stream(
                "GET",
                self._base_url + path,
                params=params,
                timeout=self._timeout,
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                if response.is_error:
                    await response.aread()
                    body = _json_object(response) or {}
                    code = body.get("code")
                    raise FeishuError(
                        "api" if isinstance(code, int) else "http",
                        f"Feishu answered HTTP {response.status_code} for the resource (code {code})",
                        feishu_code=code if isinstance(code, int) else None,
                        http_status=response.status_code,
                    )
                data = bytearray()
                async for piece in response.aiter_bytes():
                    data += piece
                    if len(data) > max_bytes:
                        break
                return bytes(data), response.headers.get("content-type", "")
        except httpx.TimeoutException as exc:
            raise FeishuError("timeout", f"Feishu did not answer within {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise FeishuError("network", f"cannot reach Feishu ({type(exc).__name__})") from exc

    def _delay(self, attempt: int, reset: str | None) -> float:
        if reset is not None:
            try:
                return min(self._max_wait, max(0.0, float(reset)))
            except ValueError:
                pass
        return min(self._max_wait, 0.2 * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    async def bot_open_id(self) -> str:
        body = await self.call("GET", "/open-apis/bot/v3/info")
        bot = body.get("bot") if isinstance(body.get("bot"), dict) else {}
        open_id = bot.get("open_id") if isinstance(bot, dict) else None
        if not isinstance(open_id, str) or not open_id:
            raise FeishuError("bad_response", "bot info has no open_id")
        return open_id


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
