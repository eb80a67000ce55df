"""EchoCenter's files hold secrets or the database: owner-only files (0600) in an owner-only folder (0700).

Modes are set explicitly, not left to the umask, and files that already exist are tightened too (an older
install, or a copy, may have left them 0644).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sqlalchemy.engine import make_url

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    path.chmod(PRIVATE_DIR_MODE)


def make_private(path: Path) -> None:
    """Tighten a file that may exist to 0600."""
    with contextlib.suppress(FileNotFoundError):
        path.chmod(PRIVATE_FILE_MODE)


def write_private(path: Path, text: str) -> None:
    """Write a file readable by the owner only, whatever mode an existing file had."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), PRIVATE_FILE_MODE)  # O_CREAT keeps an existing file's mode
        file.write(text)


def secure_sqlite_files(database_url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (its -wal and -shm files copy the database file's mode)
    and tighten the files an earlier run left behind. Nothing to do for other databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    database = Path(url.database)
    if not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
    for path in (database, *(Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
        make_private(path)
