"""GET /api/agents: a page at a time by name, filtered by online state and name prefix, with counts."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
from websockets.asyncio.client import connect

from tests.conftest import Server
from tests.support.waiting import eventually

NAMES = ["db-01", "db-02", "web-01", "web-02", "web-03", "Web_x", "wx"]


async def _register(server: Server) -> dict[str, str]:
    tokens = {}
    for name in NAMES:
        created = await server.client.post("/api/agents", json={"name": name})
        assert created.status_code == 201, created.text
        tokens[name] = created.json()["token"]
    return tokens


async def _page(server: Server, **params: Any) -> dict[str, Any]:
    response = await server.client.get("/api/agents", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def _all_pages(server: Server, **params: Any) -> list[str]:
    names: list[str] = []
    cursor = None
    while True:
        page = await _page(server, **params, **({"cursor": cursor} if cursor else {}))
        names += [a["name"] for a in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return names


async def test_agents_are_paged_by_name_with_counts_and_filters(server: Server) -> None:
    tokens = await _register(server)
    everyone = await _all_pages(server)
    assert sorted(everyone) == sorted(NAMES) and len(everyone) == len(set(everyone))

    ws_url = server.url.replace("http", "ws", 1) + "/api/agents/ws"
    async with AsyncExitStack() as stack:
        for name in ("db-02", "web-01"):
            await stack.enter_async_context(
                connect(ws_url, additional_headers={"Authorization": f"Bearer {tokens[name]}"}, proxy=None)
            )

        async def two_online() -> bool:
            return (await _page(server))["online"] == 2

        await eventually(two_online)
        first = await _page(server, limit=3)
        assert len(first["items"]) == 3 and first["next_cursor"] is not None
        assert (first["total"], first["online"]) == (len(NAMES), 2)
        # Pages of 3 walk every agent once, in the same order as one big page.
        assert await _all_pages(server, limit=3) == everyone
        assert await _all_pages(server, limit=1) == everyone

        online = await _page(server, online="true")
        assert [a["name"] for a in online["items"]] == ["db-02", "web-01"]
        assert all(a["online"] for a in online["items"])
        offline = await _all_pages(server, online="false", limit=2)
        assert sorted(offline) == sorted(set(NAMES) - {"db-02", "web-01"})

        # The name prefix is case-insensitive, and % or _ in it are plain characters.
        web = await _page(server, q="WEB")
        assert sorted(a["name"] for a in web["items"]) == ["Web_x", "web-01", "web-02", "web-03"]
        assert (web["total"], web["online"]) == (4, 1)
        assert (await _page(server, q="w%"))["total"] == 0
        assert [a["name"] for a in (await _page(server, q="w"))["items"]] == sorted(
            ["Web_x", "web-01", "web-02", "web-03", "wx"], key=everyone.index
        )
        assert [a["name"] for a in (await _page(server, q="web_"))["items"]] == ["Web_x"]
        assert (await _page(server, q="web-", online="false"))["items"][0]["name"] == "web-02"

        # A revoked agent is offline, even while its socket was open a moment ago.
        [web01] = (await _page(server, q="web-01"))["items"]
        assert (await server.client.delete(f"/api/agents/{web01['id']}")).status_code == 200

        async def one_online() -> bool:
            page = await _page(server, online="true")
            return page["online"] == 1 and [a["name"] for a in page["items"]] == ["db-02"]

        await eventually(one_online)


async def test_bad_paging_parameters_are_refused_clearly(server: Server) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"online": "maybe"}, {"q": "x" * 65}, {"cursor": "c" * 65}):
        response = await server.client.get("/api/agents", params=params)
        assert 400 <= response.status_code < 500, (params, response.text)
        assert set(response.json()["error"]) >= {"code", "message"}
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        assert (await anonymous.get("/api/agents")).status_code == 401
