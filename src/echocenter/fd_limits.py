"""Open-file limits: the soft limit raised to the hard one at start, and running out handled calmly.

When the process has no descriptor left, accept() fails with EMFILE. asyncio then means to pause accepting
on that socket for a second (selector_events.ACCEPT_RETRY_DELAY), but its accept loop goes on calling
accept() up to `backlog` times (uvicorn: 2048) in the same tick, reporting each failure with a traceback and
scheduling a retry for each: the process spins and floods the log. ``CalmAcceptLoop`` ends that loop at the
first resource error, and ``AcceptGuard`` takes the report: one log line per interval (with how many failures
it covers) and a state readiness can show, while the existing connections (agent sockets, HTTP keep-alive)
are served as usual.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from typing import Any

from echocenter.logging_setup import log_event

log = logging.getLogger(__name__)

ACCEPT_RESOURCE_MESSAGE = "socket.accept() out of system resource"  # asyncio's wording (selector_events)
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
LOG_INTERVAL_SECONDS = 10.0
RECOVERED_AFTER_SECONDS = 3.0  # asyncio retries every second: no failure for this long means accepting again


def raise_open_files_limit() -> tuple[int, int]:
    """Soft limit := hard limit (each agent socket is a descriptor); logs both. Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = soft
    if hard == resource.RLIM_INFINITY or soft < hard:
        raised = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError):
            raised = soft
    log_event(log, "open_files_limit", soft_before=soft, soft=raised, hard=hard)
    return raised, hard


class AcceptGuard:
    """Whether this process can accept new connections, fed by the event loop's resource errors."""

    def __init__(self) -> None:
        self.failures = 0  # accept() failures for lack of resources, since start
        self._last_failure: float | None = None
        self._last_log: float | None = None
        self._unlogged = 0

    def accepting(self) -> bool:
        return self._last_failure is None or time.monotonic() - self._last_failure > RECOVERED_AFTER_SECONDS

    def state(self) -> dict[str, Any]:
        """For readiness and /api/health: accepting, and the descriptor limit it runs against."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return {
            "accepting_connections": self.accepting(),
            "accept_failures": self.failures,
            "open_files_limit": soft,
        }

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route the loop's out-of-resources accept reports here; everything else goes where it went."""
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if context.get("message") == ACCEPT_RESOURCE_MESSAGE and isinstance(exc, OSError):
                self.accept_failed(exc)
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)

    def accept_failed(self, exc: OSError) -> None:
        now = time.monotonic()
        self.failures += 1
        self._last_failure = now
        self._unlogged += 1
        if self._last_log is None or now - self._last_log >= LOG_INTERVAL_SECONDS:
            log_event(
                log,
                "accept_backoff",
                level=logging.WARNING,
                error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                failures=self._unlogged,
                open_files_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )
            self._last_log, self._unlogged = now, 0


ACCEPT_GUARD = AcceptGuard()  # descriptors are per process, so is this state


class _StopAtResourceError:
    """The listening socket as asyncio's accept loop sees it: after a resource error, nothing is pending."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._failed = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self._failed:
            raise BlockingIOError  # asyncio's accept loop takes this as "the queue is empty" and returns
        try:
            return self.sock.accept()
        except OSError as exc:
            if exc.errno in OUT_OF_RESOURCES:
                self._failed = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class CalmAcceptLoop(asyncio.SelectorEventLoop):
    """The selector loop with an accept loop that stops at the first EMFILE (see the module's docstring).

    uvicorn takes it as ``loop="echocenter.fd_limits:CalmAcceptLoop"`` (a custom loop factory)."""

    def __init__(self) -> None:
        super().__init__()
        ACCEPT_GUARD.install(self)

    def _accept_connection(self, protocol_factory: Any, sock: Any, *args: Any, **kwargs: Any) -> None:
        raw = sock.sock if isinstance(sock, _StopAtResourceError) else sock  # a retry hands the wrapper back
        super()._accept_connection(  # type: ignore[misc]
            protocol_factory, _StopAtResourceError(raw), *args, **kwargs
        )
