"""Command templates: a command line split like a shell would (``shlex``), whose words may hold one
``{name}`` placeholder each, filled per argument with a value checked against the parameter's type.

A directive is split the same way and matched word by word; the program then runs from the template's argv
with the checked values put in — never through a shell, so ``;``, ``|``, ``$(…)`` are just characters.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CommandTemplate", "Param", "Refused", "match", "parse_template"]

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INTEGER = re.compile(r"-?[0-9]{1,18}")


class Refused(Exception):
    """The directive matches none of the agent's commands; the message says why."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: Literal["choice", "regex", "int"]
    choices: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None
    minimum: int | None = None
    maximum: int | None = None

    def check(self, value: str) -> str:
        """The value to pass as the argument, or ValueError saying why it is refused."""
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{self.name}: {value!r} is not one of {', '.join(self.choices)}")
            return value
        if self.kind == "regex":
            assert self.regex is not None
            if not self.regex.fullmatch(value):
                raise ValueError(f"{self.name}: {value!r} does not match {self.regex.pattern!r}")
            return value
        if not _INTEGER.fullmatch(value):
            raise ValueError(f"{self.name}: {value!r} is not an integer")
        number = int(value)
        if (self.minimum is not None and number < self.minimum) or (
            self.maximum is not None and number > self.maximum
        ):
            raise ValueError(f"{self.name}: {number} is outside {self.minimum}..{self.maximum}")
        return str(number)


@dataclass(frozen=True, slots=True)
class _Word:
    literal: str  # the whole word when there is no placeholder
    param: str | None = None
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True, slots=True)
class CommandTemplate:
    pattern: str  # as declared to the service: literal words shell-quoted, placeholders as {name}
    words: tuple[_Word, ...]
    params: dict[str, Param] = field(hash=False)
    timeout: float = 30.0
    max_output_bytes: int = 16_000

    def argv(self, tokens: list[str]) -> list[str]:
        """The argv for these directive words, or ValueError when they do not fit this template."""
        if len(tokens) != len(self.words):
            raise ValueError("a different number of words")
        argv: list[str] = []
        for word, token in zip(self.words, tokens, strict=True):
            if word.param is None:
                if token != word.literal:
                    raise ValueError(f"{token!r} is not {word.literal!r}")
                argv.append(token)
                continue
            if not (
                token.startswith(word.prefix)
                and token.endswith(word.suffix)
                and len(token) > len(word.prefix) + len(word.suffix)
            ):
                raise ValueError(f"{token!r} does not fit {word.prefix}{{{word.param}}}{word.suffix}")
            value = token[len(word.prefix) : len(token) - len(word.suffix)]
            argv.append(word.prefix + self.params[word.param].check(value) + word.suffix)
        return argv


def _word(text: str, params: dict[str, Param]) -> _Word:
    found = list(PLACEHOLDER.finditer(text))
    if not found:
        if "{" in text or "}" in text:
            raise ValueError(f"{text!r} has a brace that is not a {{name}} placeholder")
        return _Word(literal=text)
    if len(found) > 1:
        raise ValueError(f"{text!r}: at most one placeholder per word")
    match = found[0]
    prefix, suffix = text[: match.start()], text[match.end() :]
    if any(c in prefix + suffix for c in "{}") or any(c.isspace() for c in text):
        raise ValueError(f"{text!r}: a word with a placeholder holds no other brace and no space")
    name = match.group(1)
    if name not in params:
        raise ValueError(f"placeholder {{{name}}} has no params.{name}")
    return _Word(literal="", param=name, prefix=prefix, suffix=suffix)


def parse_template(
    run: str, params: dict[str, Param], *, timeout: float = 30.0, max_output_bytes: int = 16_000
) -> CommandTemplate:
    try:
        texts = shlex.split(run)
    except ValueError as exc:
        raise ValueError(f"cannot be split into words: {exc}") from exc
    if not texts:
        raise ValueError("is empty")
    if PLACEHOLDER.search(texts[0]):
        raise ValueError("the program itself cannot be a placeholder")
    words = tuple(_word(t, params) for t in texts)
    used = [w.param for w in words if w.param is not None]
    if len(used) != len(set(used)):
        raise ValueError("a placeholder is used twice")
    unused = set(params) - set(used)
    if unused:
        raise ValueError(f"params {', '.join(sorted(unused))} are not used in the command line")
    pattern = " ".join(
        shlex.quote(w.literal) if w.param is None else f"{w.prefix}{{{w.param}}}{w.suffix}" for w in words
    )
    return CommandTemplate(pattern, words, dict(params), timeout, max_output_bytes)


def match(command: str, templates: tuple[CommandTemplate, ...]) -> tuple[CommandTemplate, list[str]]:
    """The template a directive fits and the argv to run, or Refused with the reason."""
    try:
        tokens = shlex.split(command)
    except ValueError as exc:
        raise Refused(f"refused: {command[:200]!r} cannot be split into words ({exc})") from exc
    reasons: list[str] = []
    for template in templates:
        try:
            return template, template.argv(tokens)
        except ValueError as exc:
            if len(tokens) == len(template.words) and tokens[:1] == [template.words[0].literal]:
                reasons.append(f"{template.pattern}: {exc}")
    offered = "; ".join(t.pattern for t in templates)
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    raise Refused(
        f"refused: {command[:200]!r} is not one of this agent's commands{detail}. It runs: {offered}"
    )
