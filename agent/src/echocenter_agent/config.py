"""The agent's TOML configuration, validated into frozen dataclasses (every mistake named by its key).

```toml
url = "https://echocenter.example.com"      # http(s) becomes wss://…/api/agents/ws; ws:// and wss:// as given
token_file = "/etc/echocenter-agent/token"  # or token = "eca_…" (the token POST /api/agents returned)
name = "web-1"                              # optional, for logs
heartbeat_seconds = 10                      # defaults: 10 s heartbeats, 30 s timeout, 16000 bytes of output
default_timeout_seconds = 30
default_max_output_bytes = 16000
max_parallel = 4                            # directives run at the same time; more wait their turn

[[commands]]
run = "uptime"

[[commands]]
run = "systemctl restart {unit}"
timeout_seconds = 60
params.unit = { choices = ["nginx", "postgresql"] }

[[commands]]
run = "journalctl -u {unit} -n {lines} --no-pager"
max_output_bytes = 8000
params.unit = { regex = "[a-z0-9@._-]+" }          # the whole value must match
params.lines = { type = "int", min = 1, max = 1000 }
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from echocenter_agent.templates import CommandTemplate, Param, parse_template

__all__ = ["AgentConfig", "ConfigError", "load_config", "parse_config", "websocket_url"]

AGENT_WS_PATH = "/api/agents/ws"
_TOP_KEYS = {
    "url",
    "token",
    "token_file",
    "name",
    "heartbeat_seconds",
    "default_timeout_seconds",
    "default_max_output_bytes",
    "max_parallel",
    "commands",
}
_COMMAND_KEYS = {"run", "timeout_seconds", "max_output_bytes", "params"}
MAX_OUTPUT_CAP = 1_000_000  # the service keeps results as text; a megabyte is already a lot to read


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    url: str  # the WebSocket URL, ws:// or wss://
    token: str
    name: str
    heartbeat_seconds: float
    max_parallel: int
    commands: tuple[CommandTemplate, ...]

    def declared(self) -> list[str]:
        """The command patterns the agent declares to the service when it connects."""
        return [c.pattern for c in self.commands]


def websocket_url(url: str) -> str:
    """ws/wss URLs as given; http(s) turned into the agent WebSocket URL of that service."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss", "http", "https") or not parts.hostname:
        raise ConfigError(f"url: {url!r} is not a ws://, wss://, http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 — raises on a malformed port
    except ValueError as exc:
        raise ConfigError(f"url: {url!r} has an invalid port") from exc
    if scheme in ("ws", "wss"):
        return urlunsplit(parts)
    path = parts.path.rstrip("/")
    if not path.endswith(AGENT_WS_PATH):
        path += AGENT_WS_PATH
    return urlunsplit(("wss" if scheme == "https" else "ws", parts.netloc, path, parts.query, ""))


def _number(table: dict[str, Any], key: str, default: float, *, low: float, high: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}{key}: must be a number from {low:g} to {high:g}")
    return float(value)


def _param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table such as {{ choices = [...] }}")
    kind = spec.get("type", "choice" if "choices" in spec else "regex" if "regex" in spec else None)
    allowed_keys = {"choice": {"type", "choices"}, "regex": {"type", "regex"}, "int": {"type", "min", "max"}}
    if kind not in allowed_keys:
        raise ConfigError(f"{where}: type must be choice (with choices), regex (with regex) or int")
    unknown = set(spec) - allowed_keys[kind]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for a {kind} parameter")
    if kind == "choice":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
            raise ConfigError(f"{where}.choices: must be a non-empty list of non-empty strings")
        return Param(name, "choice", choices=tuple(choices))
    if kind == "regex":
        pattern = spec.get("regex")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where}.regex: must be a non-empty string")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}.regex: {exc}") from exc
        return Param(name, "regex", regex=compiled)
    low, high = spec.get("min"), spec.get("max")
    for key, bound in (("min", low), ("max", high)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
            raise ConfigError(f"{where}.{key}: must be an integer")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"{where}: min is greater than max")
    return Param(name, "int", minimum=low, maximum=high)


def _command(index: int, table: Any, timeout: float, cap: float) -> CommandTemplate:
    where = f"commands[{index}]"
    if not isinstance(table, dict):
        raise ConfigError(f'{where}: must be a table with at least run = "..."')
    unknown = set(table) - _COMMAND_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    run = table.get("run")
    if not isinstance(run, str) or not run.strip():
        raise ConfigError(f"{where}.run: must be a non-empty command line")
    params_table = table.get("params", {})
    if not isinstance(params_table, dict):
        raise ConfigError(f"{where}.params: must be a table")
    params = {name: _param(name, spec, f"{where}.params.{name}") for name, spec in params_table.items()}
    try:
        return parse_template(
            run,
            params,
            timeout=_number(table, "timeout_seconds", timeout, low=0.1, high=86400, where=f"{where}."),
            max_output_bytes=int(
                _number(table, "max_output_bytes", cap, low=1, high=MAX_OUTPUT_CAP, where=f"{where}.")
            ),
        )
    except ValueError as exc:
        raise ConfigError(f"{where}.run: {exc}") from exc


def _token(data: dict[str, Any], base: Path) -> str:
    if ("token" in data) == ("token_file" in data):
        raise ConfigError("token / token_file: give exactly one of them")
    if "token" in data:
        token = data["token"]
        if not isinstance(token, str):
            raise ConfigError("token: must be a string")
    else:
        if not isinstance(data["token_file"], str):
            raise ConfigError("token_file: must be a path")
        path = base / Path(data["token_file"]).expanduser()
        try:
            token = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"token_file: cannot read {path}: {exc.strerror}") from exc
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise ConfigError("token: must be a non-empty token without spaces")
    return token


def parse_config(data: dict[str, Any], *, base: Path = Path(".")) -> AgentConfig:
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}")
    url = data.get("url")
    if not isinstance(url, str):
        raise ConfigError("url: required, the service URL (ws://, wss://, http:// or https://)")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise ConfigError("name: must be a string")
    timeout = _number(data, "default_timeout_seconds", 30, low=0.1, high=86400, where="")
    cap = _number(data, "default_max_output_bytes", 16_000, low=1, high=MAX_OUTPUT_CAP, where="")
    commands_list = data.get("commands")
    if not isinstance(commands_list, list) or not commands_list:
        raise ConfigError("commands: at least one [[commands]] table is required (nothing else runs)")
    commands = tuple(_command(i, c, timeout, cap) for i, c in enumerate(commands_list))
    patterns = [c.pattern for c in commands]
    if len(set(patterns)) != len(patterns):
        raise ConfigError("commands: the same command line is listed twice")
    return AgentConfig(
        url=websocket_url(url),
        token=_token(data, base),
        name=name,
        heartbeat_seconds=_number(data, "heartbeat_seconds", 10, low=0.1, high=3600, where=""),
        max_parallel=int(_number(data, "max_parallel", 4, low=1, high=64, where="")),
        commands=commands,
    )


def load_config(path: Path) -> AgentConfig:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(data, base=path.parent)
