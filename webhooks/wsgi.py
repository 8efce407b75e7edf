"""WSGI entry for gunicorn: `gunicorn 'webhooks.wsgi:app'`.

Configuration comes from the environment; invalid settings stop the process at import with a
ConfigurationError naming each bad setting (gunicorn then reports "Worker failed to boot" and exits)."""
from __future__ import annotations

import logging

from webhooks.app import create_app, load_settings

settings = load_settings()
_level = logging.getLevelName(settings.log_level.strip().upper())  # "WARNING" -> 30; unknown -> a str
logging.basicConfig(level=_level if isinstance(_level, int) else logging.INFO,
                    format="%(asctime)s %(levelname)s %(name)s %(message)s")
if not isinstance(_level, int):
    logging.getLogger("webhooks.wsgi").warning(
        "LOG_LEVEL=%r is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL): logging at INFO", settings.log_level)

app = create_app(settings)
