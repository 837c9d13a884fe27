"""Where the gate listens: ``--listen HOST:PORT`` checked before anything starts (and a gate's
address, ``--target``, checked the same way before a check is sent).

gRPC takes almost any string and does something surprising with it (``0.0.0.0`` alone serves on
port 443, ``127.0.0.1:99999`` on a random port, ``:50082`` fails with a log line in C++), so the
address is parsed here and every mistake named. ``check_free`` then tries the port the way the
gate will bind it, so that a port in use is one plain line rather than a failed start.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import signal
import socket
from dataclasses import dataclass
from typing import Protocol

from registry.errors import PlainError

__all__ = [
    "ListenAddress",
    "ListenError",
    "Servable",
    "bind_failure",
    "check_free",
    "parse_listen",
    "parse_target",
    "serve_until_signalled",
]

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


class ListenError(PlainError):
    """``--listen`` does not name an address the gate can listen on."""


@dataclass(frozen=True)
class ListenAddress:
    host: str  # an IP address or a host name; IPv6 without brackets
    port: int  # 0: any free port

    def __str__(self) -> str:
        """The address as gRPC takes it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """``HOST:PORT`` (``[IPv6]:PORT``) to listen on (port 0: any free one), or a ``ListenError``
    saying what is wrong with it."""
    example = "e.g. 127.0.0.1:50051 (this machine only) or 0.0.0.0:50051 (every interface)"
    return _parse(value, "--listen", example, "1 to 65535, or 0 for any free port")


def parse_target(value: str) -> str:
    """A gate's address as ``check`` takes it: ``HOST:PORT`` checked as ``--listen`` is (gRPC
    would take port 99999 as 34463), or a gRPC target with a scheme (``dns:///...``,
    ``unix:...``), passed on as it is."""
    if "://" in value or value.startswith(("unix:", "dns:", "ipv4:", "ipv6:", "unix-abstract:")):
        return value
    address = _parse(value, "--target", "e.g. 127.0.0.1:50051", "1 to 65535")
    if address.port == 0:
        raise ListenError(f"--target {value!r}: port 0 is no gate's port (1 to 65535)")
    return str(address)


def _parse(value: str, option: str, example: str, ports: str) -> ListenAddress:
    def wrong(why: str) -> ListenError:
        return ListenError(f"{option} {value!r}: {why}")

    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise wrong("an IPv6 address in brackets is followed by :PORT, e.g. [::1]:50051")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise wrong(f"{host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = value.rpartition(":")
        if not colon:
            raise wrong(f"no port; give HOST:PORT, {example}")
        if ":" in host:
            raise wrong("an IPv6 address goes in brackets, e.g. [::1]:50051")
        if not host:
            raise wrong(f"no host before ':{port_text}'; {example}")
        if not _is_host(host):
            raise wrong(f"{host!r} is not an IP address or a host name")
    if not port_text:
        raise wrong(f"no port after '{value}'; {example}")
    if not port_text.isascii() or not port_text.isdigit():
        raise wrong(f"port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise wrong(f"port {port} is out of range ({ports})")
    return ListenAddress(host, port)


def _is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[\d.]+", host):  # digits and dots only, yet not an IPv4 address
        return False
    return _HOST_NAME.fullmatch(host) is not None


def check_free(address: ListenAddress) -> None:
    """Raise a ``ListenError`` saying why the gate could not listen on ``address``, if so.

    A port that another program takes in the moment between this check and the gate's bind is
    still refused, by the bind itself (``bind_failure`` words that case the same way).
    """
    if address.port == 0:
        return
    why = bind_failure(address)
    if why is not None:
        raise ListenError(f"cannot listen on {address}: {why}")


def bind_failure(address: ListenAddress) -> str | None:
    """Why binding ``address`` fails now, in words; None when it can be bound."""
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return f"the host name {address.host!r} does not resolve"
    for family, kind, proto, _, where in dict.fromkeys(infos):  # gRPC binds every one
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(where)
            except OSError as exc:
                return _bind_error(address, exc)
    return None


def _bind_error(address: ListenAddress, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {address.port} is in use (another gate, or another program); "
            "choose another with --listen"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{address.host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"port {address.port} needs privileges; use a port above 1023"
    return exc.strerror or str(exc)


class Servable(Protocol):
    """A server that starts, says in one line where it listens, and stops (the gate, the
    registry service)."""

    async def start(self) -> None: ...

    def describe(self) -> str: ...

    async def stop(self) -> None: ...


async def serve_until_signalled(app: Servable, log: logging.Logger) -> None:
    """Start ``app``, log its start line, and stop it cleanly on SIGINT or SIGTERM, also one
    that arrives while it starts (a supervisor stopping a worker that has just said it serves:
    the handlers are in place before ``start`` runs)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    log.info(app.describe())
    await stop.wait()
    log.info("stopping: finishing calls in flight")
    await app.stop()
