"""``echocenter doctor``: check a connector against Feishu without side effects and say what to fix.

Checks, in order (a failed prerequisite skips what depends on it):
1. ``credentials`` — ``POST /open-apis/auth/v3/tenant_access_token/internal``.
2. ``bot`` — ``GET /open-apis/bot/v3/info``: the Bot capability is on and the app is active in the tenant.
3. ``long_connection`` — ``POST /callback/ws/endpoint`` (discovery) only. The socket is NOT opened: Feishu
   gives each event to one of the app's connections at random, so a doctor's connection could take a real
   event away from the running service.
4. ``test_message`` — only when a chat is given: a real text message (the one check with a side effect,
   asked for explicitly).

Every check carries Feishu's code and msg when Feishu answered, and the fix in plain words.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from echocenter.db.models import FeishuConnector
from echocenter.errors import UpstreamError
from echocenter.feishu.connector_config import read_secret
from echocenter.feishu.openapi import FeishuError, request_tenant_token
from echocenter.secretbox import SecretBox
from echocenter.settings import Settings

__all__ = ["FIXES", "Check", "Target", "diagnose", "diagnose_connector", "fix_for", "missing_scopes"]

BOT_INFO_PATH = "/open-apis/bot/v3/info"
DISCOVERY_PATH = "/callback/ws/endpoint"
SEND_PATH = "/open-apis/im/v1/messages"
CONSOLE = "the developer console (open.feishu.cn/app, Lark: open.larksuite.com/app)"
LONG_CONNECTION_FIX = (
    f"In {CONSOLE} → Events & Callbacks: set the subscription mode to 'Receive events through persistent "
    "connection' (长连接) for events AND for callbacks, add the event im.message.receive_v1 and the callback "
    "card.action.trigger, then publish a new version (Version Management & Release). The console saves "
    "long-connection mode only while a client is connected: keep EchoCenter running with this connector."
)

# Feishu codes EchoCenter meets, with what to do about them (README's troubleshooting table says the same).
FIXES: dict[int, str] = {
    10003: "Feishu does not know this App ID: copy it again from Credentials & Basic Info (it starts with "
    "cli_). A Lark app needs FEISHU_BASE_URL=https://open.larksuite.com.",
    10014: "The App Secret does not belong to this App ID: copy it again from Credentials & Basic Info (or "
    "reset it there) and save it on the connector.",
    99991663: "The tenant access token is invalid or expired. EchoCenter refreshes it by itself; if this "
    "persists, the App Secret was probably reset: save the new one and verify the connector.",
    99991661: "No tenant access token was sent: verify the connector's credentials.",
    99991400: "Rate limited by Feishu (about 50 requests/s per app): EchoCenter waits x-ogw-ratelimit-reset "
    "seconds and retries; if it lasts, something else is sending with the same app.",
    11205: f"The app has no Bot capability: in {CONSOLE} → Add features → Bot, add it, then publish a new "
    "version.",
    230006: f"The Bot capability is not active: in {CONSOLE} → Features → Bot, turn it on and publish a new "
    "version.",
    230002: "The bot is not a member of this chat: add the bot to the group (group settings → Bots → Add), "
    "or check the chat_id.",
    230001: "Feishu refused a parameter (often an unknown chat_id or open_id): check the ID.",
    230020: "Too many messages to this chat (about 5 per second, shared by all bots in it): EchoCenter backs "
    "off and retries; slow down what sends into this chat.",
    1000040350: "More than 50 long connections for this app: stop other EchoCenter instances or other "
    "clients (SDK test scripts) that use the same App ID.",
    1000040344: "Long-connection discovery refused the credentials: verify the connector's App ID and App "
    "Secret.",
}
_BUSY = {1, 1000040343}  # discovery: system busy / internal error — try again


def missing_scopes(msg: str | None, body: dict[str, Any] | None = None) -> list[str]:
    """The scopes a 99991672 answer names (in ``error.permission_violations`` or in its msg)."""
    found: list[str] = []
    error = (body or {}).get("error")
    if isinstance(error, dict):
        for violation in error.get("permission_violations") or []:
            subject = violation.get("subject") if isinstance(violation, dict) else None
            if isinstance(subject, str) and subject not in found:
                found.append(subject)
    if not found and msg:
        bracket = re.search(r"\[([^\]]+)\]", msg)
        if bracket:
            found = [s.strip() for s in bracket.group(1).split(",") if s.strip()]
    return found


def fix_for(code: int | None, msg: str | None = None, body: dict[str, Any] | None = None) -> str | None:
    if code == 99991672:
        scopes = missing_scopes(msg, body)
        named = ", ".join(scopes) if scopes else "the scope named in Feishu's message"
        return (
            f"The app lacks a permission: in {CONSOLE} → Permissions & Scopes, add {named} (any one of them "
            "is enough when several are listed), then publish a new version — scopes take effect once the "
            "version is published (and approved, where your tenant requires it)."
        )
    return FIXES.get(code) if code is not None else None


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # ok | failed | skipped
    summary: str
    feishu_code: int | None = None
    feishu_msg: str | None = None
    http_status: int | None = None
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Target:
    app_id: str
    app_secret: str
    base_url: str  # Open API host
    ws_url: str  # long-connection discovery host
    timeout: float


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any] | None

    @property
    def code(self) -> int | None:
        code = (self.body or {}).get("code")
        return code if isinstance(code, int) and not isinstance(code, bool) else None

    @property
    def msg(self) -> str | None:
        msg = (self.body or {}).get("msg")
        return msg if isinstance(msg, str) else None


class _Unreachable(UpstreamError):
    """Feishu did not answer (timeout, network): the check fails with that, not with an exception."""


async def _call(http: httpx.AsyncClient, method: str, url: str, timeout: float, **kwargs: Any) -> _Answer:
    try:
        response = await http.request(method, url, timeout=timeout, **kwargs)
    except httpx.TimeoutException as exc:
        raise _Unreachable(f"{url} did not answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise _Unreachable(f"cannot reach {url} ({type(exc).__name__})") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    return _Answer(response.status_code, body if isinstance(body, dict) else None)


def _failed(name: str, summary: str, answer: _Answer | None = None, fix: str | None = None) -> Check:
    code, msg = (answer.code, answer.msg) if answer else (None, None)
    return Check(
        name,
        "failed",
        summary,
        feishu_code=code,
        feishu_msg=msg,
        http_status=answer.status if answer else None,
        fix=fix or fix_for(code, msg, answer.body if answer else None),
    )


def _network_fix(base: str) -> str:
    return (
        f"Check that this machine reaches {base} (firewall, proxy, DNS) and that FEISHU_BASE_URL / "
        "FEISHU_WS_URL are right (Feishu: https://open.feishu.cn, Lark: https://open.larksuite.com)."
    )


def _unreachable(name: str, exc: _Unreachable, base: str) -> Check:
    return Check(name, "failed", str(exc), fix=_network_fix(base))


async def _credentials(http: httpx.AsyncClient, target: Target) -> tuple[Check, str | None]:
    try:
        token = await request_tenant_token(
            http,
            base_url=target.base_url,
            app_id=target.app_id,
            app_secret=target.app_secret,
            timeout=target.timeout,
        )
    except FeishuError as exc:
        fix = fix_for(exc.feishu_code, exc.feishu_msg)
        if exc.kind in ("timeout", "network"):
            fix = _network_fix(target.base_url)
        return (
            Check(
                "credentials",
                "failed",
                exc.message,
                feishu_code=exc.feishu_code,
                feishu_msg=exc.feishu_msg,
                http_status=exc.http_status,
                fix=fix,
            ),
            None,
        )
    return Check("credentials", "ok", "Feishu accepted the App ID and App Secret (tenant token issued)"), (
        token.token
    )


_ACTIVATE_STATUS = {
    0: "not installed in the tenant yet",
    1: "disabled in the tenant",
    3: "installed, waiting to be enabled",
    4: "upgraded, waiting to be enabled",
    5: "disabled: the license expired",
    6: "disabled: the Lark plan expired or was downgraded",
}


async def _bot(http: httpx.AsyncClient, target: Target, token: str) -> Check:
    url = target.base_url.rstrip("/") + BOT_INFO_PATH
    try:
        answer = await _call(http, "GET", url, target.timeout, headers={"Authorization": f"Bearer {token}"})
    except _Unreachable as exc:
        return _unreachable("bot", exc, target.base_url)
    body = answer.body or {}
    data = body.get("data")
    bot = body.get("bot") or (data.get("bot") if isinstance(data, dict) else None)  # documented: top level
    if answer.code != 0 or not isinstance(bot, dict):
        return _failed("bot", "Feishu did not return the bot's information", answer)
    name, open_id, state = bot.get("app_name"), bot.get("open_id"), bot.get("activate_status")
    if state != 2:
        what = _ACTIVATE_STATUS.get(state, f"activate_status {state}") if isinstance(state, int) else "?"
        return Check(
            "bot",
            "failed",
            f"the app is not active in the tenant ({what})",
            feishu_code=0,
            feishu_msg=answer.msg,
            http_status=answer.status,
            fix="Publish a version in Version Management & Release, have it approved if your tenant requires "
            "it, and make sure the app is enabled for your organisation (admin console → Workplace → Apps).",
        )
    return Check("bot", "ok", f"Bot capability on: {name} ({open_id}), active in the tenant")


async def _long_connection(http: httpx.AsyncClient, target: Target) -> Check:
    url = target.ws_url.rstrip("/") + DISCOVERY_PATH
    try:
        answer = await _call(
            http,
            "POST",
            url,
            target.timeout,
            json={"AppID": target.app_id, "AppSecret": target.app_secret},
            headers={"locale": "zh"},
        )
    except _Unreachable as exc:
        return _unreachable("long_connection", exc, target.ws_url)
    data = (answer.body or {}).get("data")
    if answer.status == 200 and answer.code == 0 and isinstance(data, dict) and data.get("URL"):
        return Check(
            "long_connection",
            "ok",
            "long-connection discovery answered with an endpoint (the socket was not opened, so no event "
            "was taken from the service). Feishu does not say which events are subscribed: check that "
            "im.message.receive_v1 and card.action.trigger are listed in the console.",
        )
    if answer.code in _BUSY:
        return _failed(
            "long_connection", "Feishu is busy", answer, fix="A passing condition: run doctor again."
        )
    if answer.code == 1000040344:
        return _failed("long_connection", "discovery refused the credentials", answer)
    return _failed(
        "long_connection",
        f"long-connection discovery failed (HTTP {answer.status}): the app does not receive events by long "
        "connection, or its version with that setting is not published",
        answer,
        fix=LONG_CONNECTION_FIX,
    )


async def _test_message(http: httpx.AsyncClient, target: Target, token: str, chat_id: str) -> Check:
    url = target.base_url.rstrip("/") + SEND_PATH
    id_type = "open_id" if chat_id.startswith("ou_") else "chat_id"
    try:
        answer = await _call(
            http,
            "POST",
            url,
            target.timeout,
            params={"receive_id_type": id_type},
            headers={"Authorization": f"Bearer {token}"},
            json={
                "receive_id": chat_id,
                "msg_type": "text",
                "content": '{"text":"EchoCenter doctor: test message — the bot can send here."}',
            },
        )
    except _Unreachable as exc:
        return _unreachable("test_message", exc, target.base_url)
    data = (answer.body or {}).get("data")
    if answer.code == 0 and isinstance(data, dict):
        return Check("test_message", "ok", f"sent to {chat_id} as message {data.get('message_id')}")
    return _failed("test_message", f"Feishu refused to send to {chat_id}", answer)


def _skipped(name: str, why: str) -> Check:
    return Check(name, "skipped", why)


async def diagnose(
    http: httpx.AsyncClient, target: Target, *, chat_id: str | None = None, long_connection: bool = True
) -> list[Check]:
    """Run every check; those that need a tenant token are skipped when the credentials fail, and
    discovery when the service does not use the long connection (HTTP callbacks only)."""
    credentials, token = await _credentials(http, target)
    checks = [credentials]
    if token is None:
        checks.append(_skipped("bot", "needs valid credentials"))
    else:
        checks.append(await _bot(http, target, token))
    if long_connection:
        checks.append(await _long_connection(http, target))
    else:
        checks.append(_skipped("long_connection", "FEISHU_WS_ENABLED=false: events come by HTTP callback"))
    if chat_id:
        if token is None:
            checks.append(_skipped("test_message", "needs valid credentials"))
        else:
            checks.append(await _test_message(http, target, token, chat_id))
    return checks


def _connector_check(connector: FeishuConnector) -> Check:
    if connector.enabled:
        return Check("connector", "ok", f"connector {connector.id} ({connector.connector_name}) is enabled")
    return Check(
        "connector",
        "failed",
        f"connector {connector.id} ({connector.connector_name}) is disabled: every inbound message is "
        "dropped (ws_filtered, reason connector_disabled)",
        fix="Verify the connector, then enable it (connector page, or PATCH …/feishu/:id/enable).",
    )


async def diagnose_connector(
    http: httpx.AsyncClient,
    *,
    settings: Settings,
    secrets: SecretBox,
    connector: FeishuConnector,
    chat_id: str | None = None,
) -> list[Check]:
    """The connector's own state, then the Feishu checks with its stored credentials and hosts."""
    checks = [_connector_check(connector)]
    try:
        secret = read_secret(secrets, connector, "app_secret")
    except ValueError as exc:
        return [*checks, Check("credentials", "failed", str(exc), fix="Set SECRETS_KEY to the key in use.")]
    if not connector.app_id or not secret:
        return [
            *checks,
            Check(
                "credentials",
                "failed",
                "the connector has no App ID or App Secret",
                fix="Copy both from Credentials & Basic Info in the developer console onto the connector.",
            ),
        ]
    target = Target(
        app_id=connector.app_id,
        app_secret=secret,
        base_url=settings.feishu_base_url,
        ws_url=settings.feishu_ws_url or settings.feishu_base_url,
        timeout=settings.feishu_http_timeout,
    )
    return [
        *checks,
        *await diagnose(http, target, chat_id=chat_id, long_connection=settings.feishu_ws_enabled),
    ]
