"""The loopback proxy that presents a department's client certificate (``ClientCertificateProxy``).

An upstream TLS server of the test's own stands in for the page: it requires a client
certificate from the demo CA and echoes what it reads, prefixed by the certificate's subject O,
so both directions and the identity presented are seen over real sockets on loopback.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from registry.demo_pki import DemoPki, make_demo_pki
from registry.web.client_proxy import ClientCertificateProxy

DEPARTMENT = "planning-bureau"


async def _echo_upstream(pki: DemoPki) -> tuple[asyncio.Server, int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        organisation = next(
            value for rdn in peer["subject"] for key, value in rdn if key == "organizationName"
        )
        try:
            while line := await reader.readline():
                writer.write(organisation.encode() + b": " + line)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


def _proxy(pki: DemoPki, port: int) -> ClientCertificateProxy:
    cert, key = pki.client(DEPARTMENT)
    return ClientCertificateProxy(
        "127.0.0.1",
        port,
        trust=pki.ca,
        client_cert=cert,
        client_key=key,
        serve_cert=pki.server_cert,
        serve_key=pki.server_key,
    )


async def _connect(
    proxy: ClientCertificateProxy, pki: DemoPki
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert proxy.port is not None
    return await asyncio.open_connection(
        "127.0.0.1", proxy.port, ssl=ssl.create_default_context(cafile=pki.ca)
    )


def test_bytes_are_carried_both_ways_as_the_department(tmp_path: Path) -> None:
    pki = make_demo_pki(tmp_path, [DEPARTMENT], days=1)

    async def scenario() -> list[bytes]:
        upstream, port = await _echo_upstream(pki)
        proxy = _proxy(pki, port)
        await proxy.start()
        try:
            reader, writer = await _connect(proxy, pki)
            answers = []
            for line in (b"first\n", b"second\n"):
                writer.write(line)
                await writer.drain()
                answers.append(await asyncio.wait_for(reader.readline(), 10))
            writer.close()
            return answers
        finally:
            await proxy.stop()
            upstream.close()

    assert asyncio.run(scenario()) == [
        f"{DEPARTMENT}: first\n".encode(),
        f"{DEPARTMENT}: second\n".encode(),
    ]


def test_stop_ends_the_connections_it_still_carries(tmp_path: Path) -> None:
    """A browser's connection still open when the proxy stops: its carrying task ends with
    ``stop()``, not left pending for the loop's close ("Task was destroyed but it is
    pending")."""
    pki = make_demo_pki(tmp_path, [DEPARTMENT], days=1)

    async def scenario() -> list[str]:
        upstream, port = await _echo_upstream(pki)
        proxy = _proxy(pki, port)
        await proxy.start()
        reader, writer = await _connect(proxy, pki)
        writer.write(b"held open\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 10)
        await proxy.stop()
        left = [
            repr(task.get_coro())
            for task in asyncio.all_tasks()
            if task is not asyncio.current_task() and not task.done()
        ]
        writer.close()
        upstream.close()
        return [coro for coro in left if "ClientCertificateProxy" in coro]

    assert asyncio.run(scenario()) == []
