"""WSGI entry for gunicorn: `gunicorn 'webhooks.wsgi:app'`.

Configuration comes from the environment; invalid settings stop the process at import with a
ConfigurationError naming each bad setting (gunicorn then reports "Worker failed to boot" and exits)."""
from __future__ import annotations

import logging

from webhooks.app import create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

app = create_app()
