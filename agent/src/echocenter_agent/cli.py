"""``echocenter-agent --config FILE [--check]``: exit 0 when stopped, 2 for a configuration problem (bad URL,
unreadable token file, invalid command), 3 when the service refuses the agent (token, URL, certificate)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from echocenter_agent.client import Fatal, serve
from echocenter_agent.config import AgentConfig, ConfigError, load_config

EXIT_CONFIG = 2
EXIT_REFUSED = 3


def _describe(config: AgentConfig) -> str:
    lines = [f"service: {config.url}", f"commands ({len(config.commands)}):"]
    for command in config.commands:
        limits = f"timeout {command.timeout:g} s, output ≤ {command.max_output_bytes} B"
        lines.append(f"  {command.pattern}  ({limits})")
        for param in command.params.values():
            if param.kind == "choice":
                rule = "one of " + ", ".join(param.choices)
            elif param.kind == "regex":
                assert param.regex is not None
                rule = f"matches {param.regex.pattern!r}"
            else:
                rule = f"integer {param.minimum if param.minimum is not None else '-∞'}.."
                rule += f"{param.maximum if param.maximum is not None else '∞'}"
            lines.append(f"    {{{param.name}}}: {rule}")
    return "\n".join(lines)


async def _run(config: AgentConfig) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="echocenter-agent", description=__doc__)
    parser.add_argument("--config", "-c", type=Path, required=True, help="the agent's TOML file")
    parser.add_argument("--check", action="store_true", help="validate the configuration, print it, exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"echocenter-agent: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if args.check:
        print(f"{args.config}: ok\n{_describe(config)}")
        sys.exit(0)
    try:
        asyncio.run(_run(config))
    except Fatal as exc:
        print(f"echocenter-agent: stopped: {exc}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
    sys.exit(0)
