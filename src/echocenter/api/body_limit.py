"""Refuse request bodies over MAX_BODY_BYTES before they are read into memory."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from echocenter.errors import PayloadTooLarge, error_body


class BodySizeLimit:
    """Checks Content-Length up front, and counts streamed (chunked) bodies as they arrive.

    When a streamed body runs over, the app is stopped reading and whatever response it then builds is
    replaced by the 413, so the client always learns the real reason.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        error = PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")
        return JSONResponse(error_body(error.code, error.message), status_code=error.status_code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return

        seen = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise PayloadTooLarge("request body too large")
            return message

        async def guarded_send(message: Message) -> None:
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._too_large()(scope, receive, send)

        await self.app(scope, limited_receive, guarded_send)
