"""Load generation for benchmarks: push many message events at a fixed rate or flat out, and report how
fast they were acked (frame sent → ack received, measured here, in the emulator)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from echocenter.emulator.events import message_receive, text_with_mentions
from echocenter.emulator.longconn import Delivery, LongConnHub
from echocenter.emulator.state import Message, World, new_id, now_ms


class PushIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_id: str
    chat_id: str = "oc_ops"
    chat_ids: list[str] = Field(default=[], description="if given, the messages go round these chats")
    sender: str = "ou_alice"
    text: str = "status"
    mention_bot: bool = True
    count: int = Field(ge=1, le=1_000_000)
    rate_per_second: float = Field(default=0, ge=0, description="0: as fast as possible")


@dataclass
class Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    pushed: list[Message] = field(default_factory=list)  # the messages, to find the bot's replies to them
    started: float = field(default_factory=time.perf_counter)
    done_pushing: bool = False

    def stats(self) -> dict[str, Any]:
        acked = [d for d in self.deliveries if d.acked_at is not None and d.last_sent_at is not None]
        latencies = sorted((d.acked_at - d.last_sent_at) * 1000 for d in acked)  # type: ignore[operator]
        last_ack = max((d.acked_at for d in acked), default=None)  # type: ignore[type-var]
        duration = (last_ack - self.started) if last_ack else None
        return {
            "pushed": len(self.deliveries),
            "done_pushing": self.done_pushing,
            "acked": len(acked),
            "duration_s": duration,
            "acked_per_s": len(acked) / duration if duration else None,
            "ack_ms_p50": statistics.median(latencies) if latencies else None,
            "ack_ms_p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            if latencies
            else None,
            "ack_ms_max": latencies[-1] if latencies else None,
            "redelivered": sum(1 for d in self.deliveries if len(d.attempts) > 1),
        }

    def answers(self, messages: dict[str, Message]) -> dict[str, Any]:
        """How fast the bot answered: message pushed → its first reply stored here (ms, this clock)."""
        first_reply: dict[str, int] = {}
        for m in messages.values():
            if m.sender_type == "app" and m.parent_id:
                first_reply[m.parent_id] = min(first_reply.get(m.parent_id, m.create_time), m.create_time)
        pushed = {m.message_id: m.create_time for m in self.pushed}
        latencies = sorted(first_reply[i] - at for i, at in pushed.items() if i in first_reply)
        if not latencies:
            return {"answered": 0, "answered_per_s": None, "answer_ms_p50": None, "answer_ms_p99": None}
        start = min(pushed.values())
        last = max(first_reply[i] for i in pushed if i in first_reply)
        return {
            "answered": len(latencies),
            "answered_per_s": len(latencies) / ((last - start) / 1000) if last > start else None,
            "answer_ms_p50": statistics.median(latencies),
            "answer_ms_p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "answer_ms_max": latencies[-1],
        }


class LoadGenerator:
    def __init__(self, world: World, hub: LongConnHub) -> None:
        self.world = world
        self.hub = hub
        self.batches: dict[str, Batch] = {}

    def start(self, spec: PushIn) -> str:
        batch_id = new_id("b", 4)
        batch = self.batches[batch_id] = Batch()
        self.hub._spawn(self._push(spec, batch))
        return batch_id

    async def _push(self, spec: PushIn, batch: Batch) -> None:
        app, sender = self.world.apps[spec.app_id], self.world.users[spec.sender]
        chats = [self.world.chats[c] for c in spec.chat_ids or [spec.chat_id]]
        mentioned = [self.world.users[app.bot_open_id]] if spec.mention_bot else []
        text, mentions = text_with_mentions(spec.text, mentioned, app.tenant_key)
        content = json.dumps({"text": text})
        interval = 1.0 / spec.rate_per_second if spec.rate_per_second else 0.0
        batch.started = time.perf_counter()
        for i in range(spec.count):
            chat = chats[i % len(chats)]
            message = Message(
                new_id("om_"),
                chat.chat_id,
                sender.open_id,
                "user",
                "text",
                content,
                now_ms(),
                mentions=mentions,
            )
            batch.pushed.append(message)
            self.world.store(message)  # in the chat, as in Feishu: the bot can reply to it
            batch.deliveries.append(self.hub.push(app.app_id, message_receive(app, sender, chat, message)))
            if interval:
                delay = batch.started + (i + 1) * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 50 == 49:
                await asyncio.sleep(0)  # let the deliveries go out
        batch.done_pushing = True
