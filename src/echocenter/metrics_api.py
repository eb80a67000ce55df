"""GET /metrics in Prometheus' text format.

No JWT: Prometheus scrapers do not log in. What is shown is counts, latencies, states and Feishu error codes,
never secrets or user text. Where the port is reachable by others, set METRICS_TOKEN: scrapers then send it
as a bearer token (Prometheus ``authorization: {credentials: …}``), anyone else gets 401.

A router of the app's own (beside app.py, not in api/): its gauges read the outbox, the bridge, the agent hub
and approvals, so it sits above them all.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select

from echocenter import metrics
from echocenter.agents.deps import AgentHubDep
from echocenter.api.deps import SessionsDep, SettingsDep
from echocenter.approvals.states import ApprovalStatus
from echocenter.db.models import Approval, ConnectorInstanceStatus, ConnectorStatus
from echocenter.errors import NotAuthenticated, NotFound
from echocenter.feishu.deps import BridgeDep, OutboxDep

router = APIRouter(tags=["health"])
_bearer = HTTPBearer(auto_error=False, description="METRICS_TOKEN, when one is set")


async def _refresh_stored_state(
    sessions: SessionsDep, outbox: OutboxDep, bridge: BridgeDep, agents: AgentHubDep
) -> None:
    """The gauges that describe the database (the same on every instance) and this instance's agents."""
    depth, oldest = await outbox.backlog()
    metrics.OUTBOX_DEPTH.set(depth)
    metrics.OUTBOX_OLDEST_AGE.set(oldest)
    async with sessions() as session:
        approvals = dict(
            (await session.execute(select(Approval.status, func.count()).group_by(Approval.status))).all()
        )
        # This instance's own long connections (each instance records its state per connector).
        mine = ConnectorInstanceStatus.instance_id == bridge.instance_id
        connections = dict(
            (
                await session.execute(
                    select(ConnectorInstanceStatus.state, func.count())
                    .where(mine)
                    .group_by(ConnectorInstanceStatus.state)
                )
            ).all()
        )
    for state in ApprovalStatus:
        metrics.APPROVALS.labels(state.value).set(approvals.get(state.value, 0))
    for status in ConnectorStatus:
        metrics.LONG_CONNECTIONS.labels(status.value).set(connections.get(status.value, 0))
    metrics.AGENTS_ONLINE.set(len(agents.online()))  # held by this instance


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer METRICS_TOKEN when set; off with METRICS_ENABLED=false)",
    response_class=Response,
)
async def scrape(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    sessions: SessionsDep,
    outbox: OutboxDep,
    bridge: BridgeDep,
    agents: AgentHubDep,
) -> Response:
    if not settings.metrics_enabled:
        raise NotFound("metrics are turned off (METRICS_ENABLED=false)")
    if settings.metrics_token and (
        credentials is None or not secrets.compare_digest(credentials.credentials, settings.metrics_token)
    ):
        raise NotAuthenticated("GET /metrics needs the METRICS_TOKEN as a bearer token")
    await _refresh_stored_state(sessions, outbox, bridge, agents)
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
