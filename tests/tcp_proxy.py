"""A small TCP proxy for fault tests: it forwards a local port to a server, and can cut every
connection (and refuse new ones) or delay every chunk it forwards, while the test runs."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

__all__ = ["TcpProxy"]


class TcpProxy:
    """``127.0.0.1:<port>`` forwarding to ``target``; ``cut()``, ``slow(seconds)``, ``heal()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.delay = 0.0
        self._cut = False
        self._closing = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until ``heal``."""
        self._cut = True
        self._drop_all()

    def slow(self, seconds: float) -> None:
        """Delay every chunk forwarded, either way, by ``seconds``."""
        self.delay = seconds

    def heal(self) -> None:
        self._cut = False
        self.delay = 0.0

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        self._drop_all()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 0.5)
                if self._closing or (self._cut and not readable):
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.delay:
                        time.sleep(self.delay)
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: a socket closed by cut() meanwhile
            return
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.discard(a)
                self._sockets.discard(b)
