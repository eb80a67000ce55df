"""The Open API client against Feishu played by ``httpx.MockTransport``: the tenant token cached and refreshed
on 99991663, retries with backoff on rate limits (99991400 + x-ogw-ratelimit-reset) and 5xx with the same
``uuid`` on every retry of a create, a permanent error raised with Feishu's code and message, and neither
the App Secret nor a token in the log."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import httpx
import pytest

from echocenter.feishu.openapi import TENANT_TOKEN_PATH, FeishuError, OpenApiClient

BASE = "https://open.feishu.test"
APP_ID, APP_SECRET = "cli_test", "secret-that-must-never-be-logged"
SEND = "/open-apis/im/v1/messages"


@dataclass
class Call:
    at: float
    token: str
    body: dict[str, object]


@dataclass
class FakeFeishu:
    """Hands out a new token per request; answers API calls with ``answers`` in turn, then with success."""

    answers: list[httpx.Response] = field(default_factory=list)
    tokens_issued: int = 0
    calls: list[Call] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        if request.url.path == TENANT_TOKEN_PATH:
            assert body == {"app_id": APP_ID, "app_secret": APP_SECRET}
            self.tokens_issued += 1
            given = token(self.tokens_issued)
            return httpx.Response(200, json={"code": 0, "tenant_access_token": given, "expire": 7200})
        bearer = request.headers["Authorization"].removeprefix("Bearer ")
        self.calls.append(Call(time.monotonic(), bearer, body))
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json={"code": 0, "msg": "success", "data": {"message_id": "om_sent"}})


def token(n: int) -> str:
    return f"t-tenant-token-{n}"


def feishu_error(status: int, code: int, msg: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "msg": msg}, headers=headers)


@pytest.fixture
def feishu() -> FakeFeishu:
    return FakeFeishu()


@pytest.fixture
async def client(feishu: FakeFeishu) -> AsyncIterator[OpenApiClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(feishu.handle)) as http:
        yield OpenApiClient(http, base_url=BASE, app_id=APP_ID, app_secret=APP_SECRET, max_attempts=4)


def create(uuid: str = "reply-om_1-0") -> Callable[[OpenApiClient], Awaitable[dict[str, Any]]]:
    """Send a text message, as the outbox does: the ``uuid`` is Feishu's idempotency key."""
    body = {"receive_id": "oc_ops", "msg_type": "text", "content": '{"text":"hi"}', "uuid": uuid}
    return lambda client: client.call("POST", SEND, json=body, params={"receive_id_type": "chat_id"})


async def test_the_token_is_fetched_once_and_reused(client: OpenApiClient, feishu: FakeFeishu) -> None:
    for _ in range(3):
        assert await client.call("GET", "/open-apis/bot/v3/info") == {"message_id": "om_sent"}
    assert feishu.tokens_issued == 1
    assert [c.token for c in feishu.calls] == [token(1)] * 3


async def test_an_invalid_token_is_refreshed_once_and_the_call_repeated(
    client: OpenApiClient, feishu: FakeFeishu
) -> None:
    await client.tenant_token()
    feishu.answers = [feishu_error(400, 99991663, "Invalid access token for authorization")]
    assert await create()(client) == {"message_id": "om_sent"}
    assert [c.token for c in feishu.calls] == [token(1), token(2)]
    await client.call("GET", "/open-apis/bot/v3/info")
    assert feishu.calls[-1].token == token(2) and feishu.tokens_issued == 2  # the new token is kept


async def test_a_rate_limit_waits_as_long_as_feishu_says_then_retries_the_same_create(
    client: OpenApiClient, feishu: FakeFeishu
) -> None:
    feishu.answers = [
        feishu_error(429, 99991400, "request trigger frequency limit", **{"x-ogw-ratelimit-reset": "0.3"}),
        feishu_error(400, 99991400, "request trigger frequency limit", **{"x-ogw-ratelimit-reset": "0.2"}),
    ]
    await create("reply-om_9-0")(client)
    first, second, third = feishu.calls
    assert second.at - first.at >= 0.3 and third.at - second.at >= 0.2
    assert {c.body["uuid"] for c in feishu.calls} == {"reply-om_9-0"}  # a retry can never send twice


async def test_server_errors_are_retried_with_growing_waits_and_the_same_uuid(
    client: OpenApiClient, feishu: FakeFeishu
) -> None:
    feishu.answers = [httpx.Response(500), httpx.Response(502, text="bad gateway"), httpx.Response(503)]
    await create("reply-om_5-0")(client)
    assert len(feishu.calls) == 4
    waits = [b.at - a.at for a, b in pairwise(feishu.calls)]
    # Backoff 0.2 s · 2^(n-1), jittered down to half at most: at least 0.1, 0.2, 0.4 s.
    assert all(wait >= least for wait, least in zip(waits, (0.1, 0.2, 0.4), strict=True)), waits
    assert {c.body["uuid"] for c in feishu.calls} == {"reply-om_5-0"}


async def test_it_gives_up_after_its_attempts_with_the_last_answer(feishu: FakeFeishu) -> None:
    feishu.answers = [httpx.Response(500)] * 2
    async with httpx.AsyncClient(transport=httpx.MockTransport(feishu.handle)) as http:
        two = OpenApiClient(http, base_url=BASE, app_id=APP_ID, app_secret=APP_SECRET, max_attempts=2)
        with pytest.raises(FeishuError) as raised:
            await create()(two)
    assert len(feishu.calls) == 2 and raised.value.http_status == 500


async def test_a_permanent_error_is_raised_at_once_with_feishus_code_and_message(
    client: OpenApiClient, feishu: FakeFeishu
) -> None:
    feishu.answers = [feishu_error(400, 230002, "Bot/User can NOT be out of the chat.")]
    with pytest.raises(FeishuError) as raised:
        await create()(client)
    error = raised.value
    assert (error.kind, error.feishu_code, error.feishu_msg) == (
        "api",
        230002,
        "Bot/User can NOT be out of the chat.",
    )
    assert error.http_status == 400 and "230002" in str(error)
    assert len(feishu.calls) == 1  # not retried


async def test_neither_the_secret_nor_a_token_reaches_the_log_or_an_error(
    client: OpenApiClient, feishu: FakeFeishu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    feishu.answers = [
        feishu_error(400, 99991663, "Invalid access token"),
        feishu_error(429, 99991400, "frequency limit", **{"x-ogw-ratelimit-reset": "0"}),
        feishu_error(400, 230002, "Bot/User can NOT be out of the chat."),
    ]
    with pytest.raises(FeishuError) as raised:
        await create()(client)
    assert caplog.records  # httpx logs every request: the check below reads real log lines
    shown = caplog.text + str(raised.value) + json.dumps(raised.value.detail())
    for secret in (APP_SECRET, token(1), token(2)):
        assert secret not in shown
