"""Whether a command the Butler was asked for may become an approval card at all.

A command is one line of printable text (no newline or other control or format character that could forge
lines on the card); the agent is a registered, unrevoked agent with a plain name. The person is told which
rule failed, and no card is sent.
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from echocenter.db.models import Agent

AGENT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_AGENT_NAME = 64
MAX_COMMAND = 1000
# Cc: controls (newline, tab, ESC…), Cf: format (bidi overrides, zero-width), Zl/Zp: line/paragraph breaks.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def problem_with(agent: str, command: str) -> str | None:
    """Why this request is refused, or None. Pure: the registry is checked by ``unknown_agent``."""
    if not AGENT_NAME.fullmatch(agent) or len(agent) > MAX_AGENT_NAME:
        return "an agent name uses only letters, digits, '.', '_' and '-' (at most 64)."
    if not command.strip():
        return "the command is empty."
    if len(command) > MAX_COMMAND:
        return f"the command is longer than {MAX_COMMAND} characters."
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in command):
        return "a command is one line, without line breaks or other control characters."
    return None


async def unknown_agent(session: AsyncSession, agent: str) -> bool:
    found = await session.scalar(select(Agent.id).where(Agent.name == agent, Agent.revoked_at.is_(None)))
    return found is None
