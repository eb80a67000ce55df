"""The agent hub (this instance's agent sockets) as a FastAPI dependency (set on ``app.state`` by app.py)."""

from __future__ import annotations

from typing import Annotated

from echocenter.agents.hub import AgentHub
from echocenter.api.deps import from_app_state

AgentHubDep = Annotated[AgentHub, from_app_state("agents")]
