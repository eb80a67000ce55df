"""Conversation memory that fits the model: whole exchanges kept newest first within a token budget, tool
calls always with their results, and a short deterministic digest of what was trimmed.

Tokens are estimated (about four characters a token, the usual rule of thumb for English and code): no
tokenizer download, and the budget is a guard rail, not an exact count. The digest is built from the trimmed
turns themselves rather than by another model call, so trimming costs nothing and cannot fail.
"""

from __future__ import annotations

from collections.abc import Sequence

from echocenter.butler.brains import Turn

CHARS_PER_TOKEN = 4
TURN_OVERHEAD_TOKENS = 4  # role and framing of each message
SUMMARY_CHARS = 600
SNIPPET_CHARS = 80


def estimate_tokens(turn: Turn) -> int:
    chars = len(turn.content) + sum(
        len(c.name) + len(str(c.arguments or {})) + len(c.id) for c in turn.tool_calls
    )
    return TURN_OVERHEAD_TOKENS + (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def paired(turns: Sequence[Turn]) -> list[list[Turn]]:
    """The turns in groups the model accepts: an assistant turn with tool calls followed by one result for
    each call (results found wherever they were stored), any other turn alone. A tool-calling turn whose
    results are not all in, and a result without its call, are left out."""
    used: set[int] = set()
    groups: list[list[Turn]] = []
    for i, turn in enumerate(turns):
        if turn.role == "tool":
            continue
        if not turn.tool_calls:
            groups.append([turn])
            continue
        found: list[int] = []
        for call in turn.tool_calls:
            match = next(
                (
                    j
                    for j in range(i + 1, len(turns))
                    if j not in used and turns[j].role == "tool" and turns[j].tool_call_id == call.id
                ),
                None,
            )
            if match is None:
                break
            found.append(match)
            used.add(match)
        else:
            groups.append([turn, *(turns[j] for j in found)])
            continue
        used.difference_update(found)  # incomplete: the results stay free for a later call with the same id
    return groups


def _digest_line(turn: Turn) -> str | None:
    if turn.role == "user":
        return f"they said: {turn.content[:SNIPPET_CHARS]}"
    if turn.tool_calls:
        asked = ", ".join(
            f"{c.name}({(c.arguments or {}).get('command', '')})".replace("()", "") for c in turn.tool_calls
        )
        return f"you called {asked}"[: SNIPPET_CHARS + 20]
    if turn.role == "assistant":
        return f"you said: {turn.content[:SNIPPET_CHARS]}"
    return None


def digest(trimmed: Sequence[Turn]) -> str:
    """A short summary of trimmed turns, the most recent kept when it must be cut."""
    lines = [line for line in map(_digest_line, trimmed) if line]
    if not lines:
        return ""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) > SUMMARY_CHARS:
            break
        kept.append(line)
        size += len(line) + 2
    omitted = len(lines) - len(kept)
    head = (
        f"Earlier in this conversation ({omitted} older points omitted): "
        if omitted
        else ("Earlier in this conversation: ")
    )
    return head + "; ".join(reversed(kept)) + "."


def fit(turns: Sequence[Turn], *, budget_tokens: int) -> tuple[list[Turn], str]:
    """The newest whole groups within the budget (the newest group always), and a digest of the rest."""
    groups = paired(turns)
    kept: list[list[Turn]] = []
    used = 0
    for group in reversed(groups):
        cost = sum(estimate_tokens(t) for t in group)
        if kept and used + cost > budget_tokens:
            break
        kept.append(group)
        used += cost
    kept.reverse()
    dropped = groups[: len(groups) - len(kept)]
    while kept and kept[0][0].role == "assistant" and len(kept) > 1:
        dropped.append(kept.pop(0))  # a conversation the model sees starts with a person's words
    history = [t for group in kept for t in group]
    return history, digest([t for group in dropped for t in group])
