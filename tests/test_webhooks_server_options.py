"""`python -m webhooks.server` refuses a bad PORT, WEB_CONCURRENCY or WEB_THREADS with one line naming the
variable and exit status 1, before it imports the app or binds a port."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("name, value, message", [
    ("PORT", "eighty", "PORT must be a whole number, not 'eighty'"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1"),
    ("WEB_THREADS", "-4", "WEB_THREADS must be at least 1"),
])
def test_a_bad_server_option_stops_the_web_process_with_its_name(name, value, message, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), name: value}
    done = subprocess.run([sys.executable, "-m", "webhooks.server"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == message
    assert done.stdout == ""
