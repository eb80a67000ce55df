"""Login memory benchmark (issue 10 point 8): how much does a burst of concurrent logins grow the service?

Starts EchoCenter (SQLite, ENVIRONMENT=production, so the production Argon2id cost of 64 MiB and 3 passes) in
its own process, then sends N logins at once, each from its own loopback address (127.0.0.x, so neither the
per-address budget nor a per-username lock turns them away before a password is hashed). Prints the service's
RSS before, its peak RSS (VmHWM) and RSS after, the answers (401 = hashed and refused, 429 = waited too long
for a hashing slot) and the time the burst took.

Target: 40 concurrent logins grow RSS by < 300 MB. Each hash holds 64 MiB while it runs; without the bound
on concurrent hashes (LOGIN_MAX_CONCURRENT_HASHES) up to 40 ran at once.

Usage: python benchmarks/login_memory.py [--logins 40] [--max-concurrent-hashes 2] [--wait 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections import Counter

import httpx
from _stack import free_port, peak_rss_mib, rss_mib, wait_http


async def login_from(url: str, address: str, username: str) -> int:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=120) as client:
        response = await client.post("/api/auth/login", json={"username": username, "password": "wrong-pass"})
        return response.status_code


async def main(logins: int, max_concurrent_hashes: int, wait: float) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "ENVIRONMENT": "production",
            "JWT_SECRET": secrets.token_urlsafe(48),
            "DATA_DIR": data_dir,
            "DATABASE_URL": "",
            "FEISHU_WS_ENABLED": "false",
            "INITIAL_ADMIN_USER": "bench",
            "INITIAL_ADMIN_PASS": secrets.token_urlsafe(12),
            "LOGIN_MAX_CONCURRENT_HASHES": str(max_concurrent_hashes),
            "LOGIN_HASH_WAIT_SECONDS": str(wait),
            "LOG_LEVEL": "WARNING",
        }
        service = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "echocenter",
            "serve",
            "--port",
            str(port),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await wait_http(url + "/api/health")
            await login_from(url, "127.0.0.1", "warm-up")  # one hash: the allocator's steady state
            before = rss_mib(service.pid)
            started = time.perf_counter()
            statuses = await asyncio.gather(
                *(login_from(url, f"127.0.{1 + n // 250}.{1 + n % 250}", f"user{n}") for n in range(logins))
            )
            elapsed = time.perf_counter() - started
            after, peak = rss_mib(service.pid), peak_rss_mib(service.pid)
        finally:
            service.terminate()
            await service.wait()
    print(f"concurrent logins:        {logins} (LOGIN_MAX_CONCURRENT_HASHES={max_concurrent_hashes})")
    print(f"answers:                  {dict(sorted(Counter(statuses).items()))}")
    print(f"burst took:               {elapsed:.2f} s")
    print(f"RSS before / after:       {before:.0f} / {after:.0f} MiB")
    print(f"peak RSS (VmHWM):         {peak:.0f} MiB")
    print(f"growth, peak - before:    {peak - before:.0f} MiB (target < 286 MiB = 300 MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--max-concurrent-hashes", type=int, default=2)
    parser.add_argument("--wait", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(main(args.logins, args.max_concurrent_hashes, args.wait))
