"""Conversation memory within a token budget, tool calls with their results, and the loop's output cap."""

from __future__ import annotations

from echocenter.butler.brains import ToolCall, Turn
from echocenter.butler.loop import cap_output
from echocenter.butler.memory import digest, estimate_tokens, fit, paired


def ask(call_id: str, command: str = "df -h") -> Turn:
    arguments = {"agent": "web-1", "command": command}
    return Turn("assistant", "", (ToolCall(call_id, "command_agent", arguments),))


def result(call_id: str, text: str = "ok") -> Turn:
    return Turn("tool", text, tool_call_id=call_id)


def test_tokens_are_estimated_at_four_characters_each_plus_framing() -> None:
    assert estimate_tokens(Turn("user", "x" * 400)) == 104


def test_results_are_paired_with_their_call_even_when_stored_later() -> None:
    turns = [Turn("user", "disk?"), ask("c1"), Turn("user", "and memory?"), result("c1", "42% used")]
    groups = paired(turns)
    assert groups == [[turns[0]], [turns[1], turns[3]], [turns[2]]]


def test_a_call_without_its_result_and_a_result_without_its_call_are_left_out() -> None:
    turns = [Turn("user", "disk?"), ask("c1"), result("c9"), Turn("user", "hello")]
    assert paired(turns) == [[turns[0]], [turns[3]]]


def test_the_newest_whole_exchanges_fit_the_budget_and_the_rest_is_digested() -> None:
    old = [Turn("user", "first question " * 40), Turn("assistant", "first answer " * 40)]
    recent = [Turn("user", "is the disk full?"), ask("c1"), result("c1", "/ 91%")]
    history, summary = fit(old + recent, budget_tokens=60)
    assert history == recent  # the call and its result stay together
    assert summary.startswith("Earlier in this conversation: they said: first question")
    assert "you said: first answer" in summary


def test_history_never_starts_with_the_assistant() -> None:
    turns = [Turn("user", "a " * 200), Turn("assistant", "b"), Turn("user", "c")]
    history, summary = fit(turns, budget_tokens=20)
    assert history == [turns[2]] and "you said: b" in summary


def test_the_newest_exchange_is_kept_even_over_budget() -> None:
    big = Turn("user", "y" * 10_000)
    assert fit([big], budget_tokens=10) == ([big], "")


def test_the_digest_is_short_and_keeps_the_most_recent() -> None:
    turns = [Turn("user", f"question number {i} " + "z" * 80) for i in range(50)]
    text = digest(turns)
    assert len(text) < 800 and "question number 49" in text and "older points omitted" in text
    assert "question number 0 " not in text


def test_output_is_capped_tail_first_with_a_note() -> None:
    assert cap_output("short", 100) == "short"
    capped = cap_output("head " + "x" * 50 + " tail", 10)
    assert capped == "[first 50 of 60 characters cut]\n" + ("x" * 50 + " tail")[-10:]
