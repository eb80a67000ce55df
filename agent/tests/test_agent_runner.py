"""Commands run as argv without a shell, killed at their timeout, their output cut at its cap."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from pathlib import Path

from echocenter_agent.runner import run_argv
from echocenter_agent.templates import Param, match, parse_template


async def test_shell_syntax_is_passed_as_plain_arguments(tmp_path: Path) -> None:
    marker = tmp_path / "x"
    templates = (parse_template("echo {text}", {"text": Param("text", "regex", regex=re.compile(".+"))}),)
    payload = f"$(touch {marker}); `touch {marker}` | cat > {marker} && echo done"
    _, argv = match(f"echo {shlex.quote(payload)}", templates)
    assert argv == ["echo", payload]
    outcome = await run_argv(argv, timeout=5, max_output_bytes=1000)
    assert outcome.ok and outcome.output == payload + "\n"
    assert not marker.exists()  # nothing was interpreted by a shell


async def test_a_templated_command_runs_with_its_checked_value() -> None:
    templates = (
        parse_template("echo restart {unit}", {"unit": Param("unit", "choice", choices=("nginx",))}),
    )
    template, argv = match("echo restart nginx", templates)
    outcome = await run_argv(argv, timeout=template.timeout, max_output_bytes=template.max_output_bytes)
    assert outcome.ok and outcome.output == "restart nginx\n"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie waiting for its reaper is dead


async def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    outcome = await run_argv([sys.executable, "-c", script], timeout=1.5, max_output_bytes=100)
    assert not outcome.ok and outcome.output == "timed out after 1.5 s; the command was killed"
    child = int(pid_file.read_text())
    for _ in range(100):  # SIGKILL is delivered asynchronously: wait up to 5 s for the child to go
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child)


async def test_output_is_cut_at_the_cap_and_the_program_is_not_blocked() -> None:
    script = "import sys; sys.stdout.write('x' * 1_000_000)"
    outcome = await run_argv([sys.executable, "-c", script], timeout=10, max_output_bytes=100)
    assert outcome.ok
    assert outcome.output == "x" * 100 + "\n[output cut at 100 bytes]"


async def test_a_failing_or_missing_program_is_reported() -> None:
    failed = await run_argv(
        [sys.executable, "-c", "import sys; print('bad'); sys.exit(3)"], timeout=5, max_output_bytes=100
    )
    assert not failed.ok and failed.output == "bad\n\n[exit status 3]"
    missing = await run_argv(["/nonexistent/program"], timeout=5, max_output_bytes=100)
    assert not missing.ok and "cannot start" in missing.output
