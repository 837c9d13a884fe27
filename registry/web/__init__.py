"""The working group's web page: flagged structures, the inbox, overdue referrals, the monthly
figures and a search, in English and Chinese, read-only over HTTPS.

``create_app`` (``registry.web.app``) is the ASGI app over a ``Database``; ``WebServer``
(``registry.web.server``) serves it with uvicorn over TLS on its own port, started and stopped
by the registry service on its event loop, or alone with ``python -m registry.web``. What the
page reads is in ``registry.web.queries``; every word it shows is in ``registry.web.catalog``.
"""

from registry.web.app import create_app
from registry.web.server import WebServer

__all__ = ["WebServer", "create_app"]
