"""What the running service shares between requests and background tasks (held on ``app.state``)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from echocenter.auth.passwords import Passwords
from echocenter.secretbox import SecretBox
from echocenter.settings import Settings


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secrets: SecretBox
    passwords: Passwords
    http: httpx.AsyncClient  # one pooled client for every call to Feishu
