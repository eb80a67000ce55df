"""Run one argv without a shell: its own process group (a timeout kills children too), stdin closed,
stdout and stderr together, at most ``max_output_bytes`` kept (the rest is read and dropped so the program
never blocks on a full pipe)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

__all__ = ["Outcome", "run_argv"]

_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    output: str


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(_CHUNK):
        room = cap - len(kept)
        if len(chunk) > room:
            truncated = True
        kept += chunk[: max(room, 0)]
    return bytes(kept), truncated


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_argv(argv: list[str], *, timeout: float, max_output_bytes: int) -> Outcome:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome(False, f"cannot start {argv[0]!r}: {exc.strerror or exc}")
    assert process.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            output, truncated = await _read_capped(process.stdout, max_output_bytes)
            code = await process.wait()
    except TimeoutError:
        _kill_group(process)
        await process.wait()
        return Outcome(False, f"timed out after {timeout:g} s; the command was killed")
    except asyncio.CancelledError:
        _kill_group(process)
        raise
    text = output.decode(errors="replace")
    if truncated:
        text += f"\n[output cut at {max_output_bytes} bytes]"
    if code != 0:
        text += f"\n[exit status {code}]"
    return Outcome(code == 0, text)
