"""Serving the working group's page: uvicorn over TLS on its own port, on the caller's loop.

``WebServer`` is started and stopped by the registry service on its asyncio loop (``await
start()`` ... ``await stop()``), beside its gRPC server, with the same certificate and key as the
service's ``--tls-cert``/``--tls-key``; ``python -m registry.web`` runs it alone. The listening
socket is bound in ``start()`` by this module, so a port in use is a plain ``WebServeError``
(not uvicorn's exit), port 0 takes a free port (``address`` tells which), and uvicorn never
installs signal handlers: the process that embeds the page owns its signals.

The page has no plaintext port: TLS 1.2 at least, the certificate chain from ``cert`` (PEM, leaf
first) and its private key from ``key``. It is read by departments only, as the department read
calls are (``registry.web.admission``): the handshake requires a client certificate issued by
``client_ca`` (the service's ``--client-ca``), and a request is answered only when that
certificate names a department enrolled and active in ``directory`` (else 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from registry.department_keys import DepartmentDirectory
from registry.errors import PlainError
from registry.storage import Database
from registry.web.admission import ClientCertificateH11, DepartmentsOnly, require_client_ca
from registry.web.app import create_app
from server.listen import ListenAddress, parse_listen

__all__ = ["WebServeError", "WebServer"]


class WebServeError(PlainError):
    """The page cannot be served: a bad address, a port in use, an unreadable certificate."""


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server, minus its signal handling (the embedding process owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _tls_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise WebServeError(
            f"the page's TLS certificate {cert} or key {key} cannot be used: {exc}"
        ) from exc
    try:
        require_client_ca(context, client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise WebServeError(f"the page's client CA {client_ca} cannot be used: {exc}") from exc
    return context


def _bind(address: ListenAddress) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        return socket.create_server((address.host, address.port), family=family, backlog=128)
    except OSError as exc:
        raise WebServeError(f"the page cannot listen on {address}: {exc.strerror or exc}") from exc


class WebServer:
    """The page over ``db``, served on ``listen`` (``HOST:PORT``; port 0: any free one) with TLS,
    to the departments ``directory`` holds enrolled, by client certificates ``client_ca`` issued.

    ``start()`` binds the port and returns once the page answers; ``stop()`` stops taking new
    connections, lets requests in flight finish (up to ``grace`` seconds), and returns. The
    database handle and the directory belong to the caller; ``stop()`` closes neither.
    """

    def __init__(
        self,
        db: Database,
        listen: str,
        cert: Path | str,
        key: Path | str,
        *,
        client_ca: Path | str,
        directory: DepartmentDirectory,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        page_size: int = 20,
    ) -> None:
        self.db = db
        self.listen = parse_listen(listen)
        self.cert = Path(cert)
        self.key = Path(key)
        self.client_ca = Path(client_ca)
        self.app = DepartmentsOnly(create_app(db, now=now, page_size=page_size), directory)
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.address: str | None = None  # HOST:PORT once started

    @property
    def url(self) -> str:
        """``https://HOST:PORT/`` once started."""
        if self.address is None:
            raise RuntimeError("WebServer.url is known once start() has returned")
        return f"https://{self.address}/"

    def describe(self) -> str:
        """The one line the service logs when the page is up."""
        return (
            f"the working group's page at {self.url} (mutual TLS: enrolled departments; read-only)"
        )

    async def start(self) -> None:
        """Bind, then serve on the running loop until ``stop()``; returns once serving."""
        if self._task is not None:
            raise RuntimeError("WebServer.start() was called twice; call stop() first")
        context = _tls_context(self.cert, self.key, self.client_ca)
        sock = _bind(self.listen)
        host, port = sock.getsockname()[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        config = uvicorn.Config(
            self.app,
            http=ClientCertificateH11,  # keeps the client certificate for DepartmentsOnly
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
        config.load()
        config.ssl = context  # the checked context, not one uvicorn builds from file names
        server = _EmbeddedServer(config)
        self._server, self._socket = server, sock
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="web page")
        while not server.started:
            if self._task.done():
                sock.close()
                self._task.result()  # its error, if any
                raise WebServeError(f"the page stopped as it started on {self.address}")
            await asyncio.sleep(0.01)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop serving: finish requests in flight for up to ``grace`` s, then close the rest."""
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.config.timeout_graceful_shutdown = max(0, round(grace))
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace + 1.0)
        except TimeoutError:
            server.force_exit = True
            await task
        finally:
            if self._socket is not None:
                self._socket.close()
            self._server = self._task = self._socket = None
