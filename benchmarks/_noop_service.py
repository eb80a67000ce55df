"""EchoCenter with the Butler replaced by a no-op, so benchmarks/inbound.py can measure the ingress alone
(deduped, filtered, logged, handed over). Settings come from the environment, as for `echocenter serve`.
Usage: python _noop_service.py PORT"""

from __future__ import annotations

import sys

import uvicorn

from echocenter.app import create_app
from echocenter.contracts import InboundMessage
from echocenter.settings import Settings


class NoopButler:
    async def handle(self, message: InboundMessage) -> None:
        return None

    async def answer(self, message: InboundMessage) -> None:
        return None


if __name__ == "__main__":
    uvicorn.run(
        create_app(Settings(), butler=NoopButler()),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
    )
