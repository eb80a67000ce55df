"""A Butler for tests: it records what reaches it, and can be told to fail."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from echocenter.contracts import InboundMessage


@dataclass
class RecordingButler:
    received: list[InboundMessage] = field(default_factory=list)
    fail_next: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, message: InboundMessage) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise RuntimeError("the Butler is down")
        self.received.append(message)
        self.arrived.set()

    async def answer(self, message: InboundMessage) -> None:
        return None  # the ingress tests check what reached the Butler, not its replies
