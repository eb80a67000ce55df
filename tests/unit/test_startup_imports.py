"""The service does not load the OpenAI SDK (about 14 MB of RSS) unless an LLM is configured (issue 15)."""

from __future__ import annotations

import subprocess
import sys


def test_the_openai_sdk_is_imported_only_for_an_llm_brain() -> None:
    probe = (
        "import sys\n"
        "from echocenter.app import create_app, make_brain\n"
        "assert 'openai' not in sys.modules, 'imported at start'\n"
        "from echocenter.butler.brains import LLMBrain\n"
        "LLMBrain(base_url='http://127.0.0.1:9', api_token='t', model='m', timeout=1)\n"
        "assert 'openai' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
