"""The approval workflow as a FastAPI dependency (set on ``app.state`` by app.py)."""

from __future__ import annotations

from typing import Annotated

from echocenter.api.deps import from_app_state
from echocenter.approvals.workflow import ApprovalWorkflow

WorkflowDep = Annotated[ApprovalWorkflow, from_app_state("workflow")]
