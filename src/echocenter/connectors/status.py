"""A connector's connection status across instances: each live instance's own row, and one combined view
("connected on 3 of 3 instances"). Instances that stopped heart-beating drop out of the count."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.cluster.instances import live_instances
from echocenter.connectors.schemas import ConnectorInstanceOut
from echocenter.db.models import ConnectorInstanceStatus, ConnectorStatus


@dataclass(frozen=True, slots=True)
class Combined:
    status: ConnectorStatus
    last_error: str | None
    summary: str
    instances: list[ConnectorInstanceOut]


@dataclass
class StatusView:
    """Every live instance's rows, read once for a page of connectors."""

    live: list[str]
    rows: dict[int, list[ConnectorInstanceStatus]] = field(default_factory=lambda: defaultdict(list))

    def combine(self, connector_id: int, stored_error: str | None) -> Combined:
        mine = sorted(self.rows.get(connector_id, []), key=lambda r: r.instance_id)
        states = [r.state for r in mine]
        connected = states.count(ConnectorStatus.CONNECTED.value)
        if connected:
            status = ConnectorStatus.CONNECTED
        elif ConnectorStatus.ERROR.value in states:
            status = ConnectorStatus.ERROR
        elif ConnectorStatus.CONNECTING.value in states:
            status = ConnectorStatus.CONNECTING
        else:
            status = ConnectorStatus.DISCONNECTED
        total = len(self.live)
        if total and connected == total:
            last_error = None
        else:
            errors = sorted((r for r in mine if r.last_error), key=lambda r: r.updated_at)
            last_error = errors[-1].last_error if errors else stored_error
        noun = "instance" if total == 1 else "instances"
        return Combined(
            status=status,
            last_error=last_error,
            summary=f"connected on {connected} of {total} {noun}",
            instances=[
                ConnectorInstanceOut(
                    instance_id=r.instance_id,
                    state=ConnectorStatus(r.state),
                    last_error=r.last_error,
                    updated_at=r.updated_at,
                )
                for r in mine
            ],
        )


async def status_view(session: AsyncSession, *, timeout: timedelta, connector_ids: list[int]) -> StatusView:
    view = StatusView(live=await live_instances(session, timeout=timeout))
    if connector_ids and view.live:
        query = select(ConnectorInstanceStatus).where(
            ConnectorInstanceStatus.connector_id.in_(connector_ids),
            ConnectorInstanceStatus.instance_id.in_(view.live),
        )
        for row in await session.scalars(query):
            view.rows[row.connector_id].append(row)
    return view
