"""The admin console under /admin (server-rendered; see webhooks.admin.views). `register_console(app, ...)`
mounts it; without any credentials configured it mounts nothing and logs how to enable it."""
from webhooks.admin.views import register_console

__all__ = ["register_console"]
