"""A loopback HTTPS front for a browser that cannot present a department's client certificate.

The working group's page admits enrolled departments by their client certificate
(``registry.web.admission``). A person's browser presents one from its certificate store; a
headless browser taking a screenshot has no store to pick from. ``ClientCertificateProxy``
listens on 127.0.0.1 only (HTTPS, with a certificate it is given), and carries each connection,
byte for byte, to the page over TLS that checks the page's certificate against ``trust`` and
presents the department's certificate and key. Whoever reaches the loopback port reads as that
department: run it only on a machine that department controls, for as long as it is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

__all__ = ["ClientCertificateProxy"]

_CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


class ClientCertificateProxy:
    """``https://127.0.0.1:PORT/`` (``url`` once started) in front of the page at
    ``upstream_host``:``upstream_port``, presenting ``client_cert``/``client_key``."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        trust: Path,
        client_cert: Path,
        client_key: Path,
        serve_cert: Path,
        serve_key: Path,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._outward = ssl.create_default_context(cafile=trust)
        self._outward.load_cert_chain(client_cert, client_key)
        self._inward = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._inward.minimum_version = ssl.TLSVersion.TLSv1_2
        self._inward.load_cert_chain(serve_cert, serve_key)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._carrying: set[asyncio.Task[None]] = set()
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("ClientCertificateProxy.url is known once start() has returned")
        return f"https://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._carry, "127.0.0.1", 0, ssl=self._inward, ssl_handshake_timeout=10
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            # The connections still carried end with the proxy, not at the loop's close.
            for task in list(self._carrying):
                task.cancel()
            await asyncio.gather(*self._carrying, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _carry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._carrying.add(task)
        try:
            await self._carry_to_upstream(reader, writer)
        finally:
            writer.close()  # also when cancelled before the page's side was open
            self._carrying.discard(task)

    async def _carry_to_upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = self.upstream
        try:
            up_reader, up_writer = await asyncio.open_connection(
                host, port, ssl=self._outward, server_hostname=host, ssl_handshake_timeout=10
            )
        except (OSError, ssl.SSLError):
            writer.close()
            return
        self._open.update((writer, up_writer))
        try:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open.difference_update((writer, up_writer))
