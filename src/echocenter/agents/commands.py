"""Which commands an agent may be asked to run.

A pattern is a command line whose words are either literal or hold ``{name}`` placeholders, e.g.
``systemctl restart {unit}`` or ``journalctl -u {unit} --lines={n}``. A request matches when, after
collapsing whitespace, it has as many words as the pattern and every word matches: literal text exactly, a
placeholder one or more characters that are not whitespace. So ``uptime`` matches only ``uptime``, and
``systemctl restart {unit}`` matches ``systemctl restart nginx`` but not ``systemctl restart a b``. What a
placeholder may hold (a list, a regex, an int range) is the agent's business: the deployable agent checks
types itself and refuses the rest; here we only keep requests off agents that never offered them.

The admin's list (``Agent.commands``) wins when set; otherwise the list the agent declared when it
connected (``Agent.declared_commands``); when both are empty any command may be requested.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

__all__ = ["PLACEHOLDER", "effective", "is_allowed", "normalize", "pattern_error"]

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_PATTERNS = 200
MAX_PATTERN_LENGTH = 500


def normalize(command: str) -> str:
    return " ".join(command.split())


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable command pattern, or None."""
    text = normalize(pattern)
    if not text:
        return "is empty"
    if len(text) > MAX_PATTERN_LENGTH:
        return f"is longer than {MAX_PATTERN_LENGTH} characters"
    if "{" in PLACEHOLDER.sub("", text) or "}" in PLACEHOLDER.sub("", text):
        return "has a brace that is not a {name} placeholder"
    names = PLACEHOLDER.findall(text)
    if len(names) != len(set(names)):
        return "uses a placeholder name twice"
    return None


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    last = 0
    for match in PLACEHOLDER.finditer(pattern):
        parts.append(re.escape(pattern[last : match.start()]))
        parts.append(r"\S+")
        last = match.end()
    parts.append(re.escape(pattern[last:]))
    return re.compile("".join(parts))


def is_allowed(command: str, patterns: Iterable[str]) -> bool:
    """True when ``command`` matches one of ``patterns`` (an empty list allows anything)."""
    listed = [normalize(p) for p in patterns]
    if not listed:
        return True
    text = normalize(command)
    return any(_compiled(p).fullmatch(text) for p in listed if p)


def effective(admin_list: Sequence[str], declared: Sequence[str]) -> list[str]:
    """The list that applies: the admin's when set, else the agent's own declaration."""
    return list(admin_list) if admin_list else list(declared)
