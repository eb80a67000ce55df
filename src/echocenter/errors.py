"""EchoCenter's exceptions: one tree, mapped to HTTP once (api/error_handlers.py handles the root).

    EchoCenterError                 500 internal_error (never shows internals)
    ├── InvalidRequest              400 invalid_request
    ├── NotAuthenticated            401 not_authenticated
    ├── PermissionDenied            403 permission_denied
    │   └── CallbackDisabled        403 callback_disabled        feishu.webhook: the HTTP callback is off
    ├── NotFound                    404 not_found
    ├── Conflict                    409 conflict
    │   └── ConnectorNotVerified    409 connector_not_verified
    ├── PayloadTooLarge             413 payload_too_large
    ├── TooManyRequests             429 too_many_requests (Retry-After)
    ├── MalformedData               input from outside that cannot be read (also a ValueError)
    │   ├── FrameError                                           feishu.longconn.frames: not a Feishu frame
    │   ├── EventParseError                                      feishu.events: not an event we can read
    │   ├── CallbackCryptoError                                  feishu.callback_crypto: does not decrypt
    │   └── FrameRefused                                         agents.frames: carries the close code
    ├── UpstreamError               a party we depend on failed or refused
    │   ├── FeishuError                                          feishu.openapi: one Open API call
    │   ├── LongConnError                                        feishu.longconn.protocol: retry or fatal
    │   │   ├── DiscoveryRefused                                 discovery answered a non-zero code
    │   │   ├── HandshakeRefused                                 the WebSocket upgrade was refused
    │   │   └── ConnectionDead                                   the watchdog heard nothing
    │   ├── OutboxFailed                                         feishu.outbox: a permanent Feishu error
    │   ├── OutboundError           409 conflict                 feishu.outbound: a send not taken (in time)
    │   ├── BrainError                                           butler.brains: the LLM could not answer
    │   └── AgentOffline                                         agents.hub: not connected or unreachable
    ├── IllegalTransition           (also a ValueError)          approvals.states: a move refused (a bug)
    ├── IllegalConnTransition       (also a RuntimeError)        feishu.longconn.protocol: a bug too
    └── AgentStop                                                agents.example: bad URL, refused token

The HTTP classes are raised by services and routers; the rest are handled where they occur and are a 500
only if one escapes to a route (OutboundError is the exception: a send Feishu did not take answers 409). The
leaves live next to the code that raises them, because they carry its data (Feishu's code, a close code);
this module knows nothing of Feishu or agents and imports nothing, so even the sans-I/O codec may use it.
The emulator keeps its own errors: it stands in for Feishu and answers in Feishu's shape, not ours.

Every error body has one shape:
``{"error": {"code": "...", "message": "...", "fields": [{"field": "...", "message": "..."}]?}}``.
"""

from __future__ import annotations

from typing import Any


class EchoCenterError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str = "internal error",
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field  # the request field at fault, when there is one
        self.headers = headers


class InvalidRequest(EchoCenterError):
    status_code = 400
    code = "invalid_request"


class NotAuthenticated(EchoCenterError):
    status_code = 401
    code = "not_authenticated"

    def __init__(self, message: str = "authentication required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class PermissionDenied(EchoCenterError):
    status_code = 403
    code = "permission_denied"


class NotFound(EchoCenterError):
    status_code = 404
    code = "not_found"


class Conflict(EchoCenterError):
    status_code = 409
    code = "conflict"


class ConnectorNotVerified(Conflict):
    code = "connector_not_verified"


class PayloadTooLarge(EchoCenterError):
    status_code = 413
    code = "payload_too_large"


class TooManyRequests(EchoCenterError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = retry_after


class MalformedData(EchoCenterError, ValueError):
    """Input from outside (frame bytes, an event, a callback body) that cannot be read. A ValueError too, so
    a caller that guards a parse with ``except ValueError`` still catches it."""


class UpstreamError(EchoCenterError):
    """A party EchoCenter depends on (Feishu, the language model, an agent) failed or refused."""


def error_body(code: str, message: str, fields: list[dict[str, str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}
