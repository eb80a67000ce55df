"""The Feishu layer's services as FastAPI dependencies (set on ``app.state`` by app.py's wiring)."""

from __future__ import annotations

from typing import Annotated

from echocenter.api.deps import from_app_state
from echocenter.feishu.bridge import FeishuBridge
from echocenter.feishu.callback_guard import RejectionThrottle
from echocenter.feishu.outbound import Outbound
from echocenter.feishu.outbox import Outbox

BridgeDep = Annotated[FeishuBridge, from_app_state("bridge")]
OutboundDep = Annotated[Outbound, from_app_state("outbound")]
OutboxDep = Annotated[Outbox, from_app_state("outbox")]
CallbackRejectionsDep = Annotated[RejectionThrottle, from_app_state("callback_rejections")]
