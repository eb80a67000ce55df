"""What the running service shares between requests and background tasks (held on ``app.state``).

Only what every layer may use: it sits below them all (the password hasher lives with auth, on
``app.state.passwords``)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from echocenter.secretbox import SecretBox
from echocenter.settings import Settings


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secrets: SecretBox
    http: httpx.AsyncClient  # one pooled client for every call to Feishu
