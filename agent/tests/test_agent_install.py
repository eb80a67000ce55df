"""The distribution installs into a fresh virtualenv with at most three third-party packages and its console
script works there (pip uses this machine's configured package index; about ten seconds)."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parents[1]
NOT_THIRD_PARTY = {"pip", "setuptools", "wheel", "echocenter-agent", "echocenter_agent"}


def test_installs_in_a_fresh_virtualenv_with_few_dependencies(tmp_path: Path) -> None:
    source = tmp_path / "agent"
    shutil.copytree(AGENT_DIR, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    frozen = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    names = {line.split("==")[0].lower() for line in frozen}
    third_party = names - NOT_THIRD_PARTY
    assert "echocenter-agent" in names
    assert third_party == {"websockets"}, third_party  # at most 3 allowed; one needed
    (tmp_path / "agent.toml").write_text(
        'url = "http://127.0.0.1:8080"\ntoken = "eca_x"\n[[commands]]\nrun = "uptime"\n'
    )
    checked = subprocess.run(
        [env_dir / "bin" / "echocenter-agent", "--config", str(tmp_path / "agent.toml"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    assert "service: ws://127.0.0.1:8080/api/agents/ws" in checked.stdout
