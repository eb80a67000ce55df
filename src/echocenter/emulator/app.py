"""The emulator as one ASGI app: Open API, long connection, control API and the chat page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route, WebSocketRoute

from echocenter.emulator.control import Control
from echocenter.emulator.longconn import LongConnHub
from echocenter.emulator.openapi import OpenApi
from echocenter.emulator.state import EmulatorConfig, World

STATIC = Path(__file__).parent / "static"


class Emulator:
    """Holds the world and the hub, so tests can reach them in-process besides the HTTP control API."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.world = World(config)
        self.hub = LongConnHub(self.world)
        self.control = Control(self.world, self.hub)
        self.openapi = OpenApi(self.world)

    def asgi(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            yield
            await self.hub.close()

        async def chat_page(_: object) -> FileResponse:
            return FileResponse(STATIC / "chat.html")

        routes = [
            Route("/", chat_page),
            Route("/callback/ws/endpoint", self.hub.discover, methods=["POST"]),
            WebSocketRoute("/callback/ws/connect", self.hub.connect),
            *self.openapi.routes(),
            *self.control.routes(),
        ]
        return Starlette(routes=routes, lifespan=lifespan)


def create_emulator_app(config: EmulatorConfig | None = None) -> Starlette:
    return Emulator(config).asgi()
