"""Wiring: what one process runs and how the parts meet. settings (the environment), queue (huey by
QUEUE_URL), connectors (which connector serves a vendor), runtime (settings + database + queue + matrix +
connectors), tasks (huey tasks), periodic (a worker's periodic jobs), sink (the web process's event sink).
The core (integration/) never imports this package."""
