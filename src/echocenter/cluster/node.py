"""This instance's place in the fleet: its heartbeat, the event bus and the agent presence buffer, started
together at start-up and left cleanly at stop (README "Running several instances")."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from echocenter.cluster.bus import EventBus, make_bus
from echocenter.cluster.instances import InstanceRegistry
from echocenter.cluster.presence import PresenceBuffer, online_agents
from echocenter.logging_setup import log_event
from echocenter.runtime import Runtime

log = logging.getLogger(__name__)

StartTask = Callable[[str, Awaitable[Any]], None]  # the app's TaskSet.start


@dataclass(frozen=True, slots=True)
class ClusterNode:
    registry: InstanceRegistry
    bus: EventBus
    presence: PresenceBuffer
    runtime: Runtime

    @classmethod
    async def join(cls, runtime: Runtime, *, start: StartTask) -> ClusterNode:
        settings = runtime.settings
        instance_id = settings.resolved_instance_id
        registry = InstanceRegistry(
            runtime.sessions, instance_id=instance_id, timeout=settings.instance_timeout_seconds
        )
        await registry.beat()
        presence = PresenceBuffer(
            runtime.sessions, instance_id=instance_id, flush_seconds=settings.presence_flush_seconds
        )
        await presence.forget_mine()
        bus = make_bus(
            instance_id,
            engine=runtime.engine,
            url=settings.resolved_database_url,
            schema=settings.database_schema,
        )
        await bus.start()
        start("instance-heartbeat", registry.run(settings.instance_heartbeat_seconds))
        start("agent-presence", presence.run())
        log_event(log, "instance_joined", instance_id=instance_id, bus=type(bus).__name__)
        return cls(registry, bus, presence, runtime)

    async def agents_online(self) -> list[str]:
        """The shared view: agents held by any live instance."""
        timeout = timedelta(seconds=self.runtime.settings.instance_timeout_seconds)
        async with self.runtime.sessions() as session:
            return list(await online_agents(session, timeout=timeout))

    async def leave(self) -> None:
        """A clean stop: this instance's agents and connections drop out of the shared view at once."""
        await self.bus.stop()
        with contextlib.suppress(Exception):  # the database may be gone: then the timeout does it
            await self.registry.leave()
