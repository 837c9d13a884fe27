"""The two servers of the gate benchmark, each run in a process of its own.

    python -m benchmarks.servers bare ANSWER_FILE
    python -m benchmarks.servers gate DB_URL KEYS_DIR

``bare`` is the floor: a ``grpc.aio`` server whose ``CheckConnection`` returns one pre-built
``Decision`` (read from ANSWER_FILE, serialised protobuf: a real answer of the gate, so the
message sizes match) and does nothing else. ``gate`` is the real gate, ``server.app.GateApp``,
as ``permitgate serve`` runs it. Both bind 127.0.0.1 on a free port, run on uvloop as
``permitgate serve`` does, print ``port N`` on standard output once serving, and stop when
their standard input closes (so they cannot outlive the benchmark) or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import uvloop
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc

__all__ = ["OPTIONS", "BareGate", "main", "ready", "serve_servicer", "stop_event"]

# The options GateApp gives its server.
OPTIONS = [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 << 20)]


class BareGate(gate_pb2_grpc.PermitGateServicer):
    """Answers every CheckConnection with the same pre-built Decision."""

    def __init__(self, answer: pb.Decision) -> None:
        self._answer = answer

    async def CheckConnection(  # noqa: N802  (gRPC method names)
        self, request: pb.ConnectionCheck, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Decision:
        return self._answer


def stop_event() -> asyncio.Event:
    """Set on SIGTERM/SIGINT, or when standard input reaches end of file."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    return stop


def ready(port: int) -> None:
    print(f"port {port}", flush=True)


async def serve_servicer(servicer: gate_pb2_grpc.PermitGateServicer) -> None:
    """Serve ``servicer`` as ``permitgate.v1.PermitGate`` on a free loopback port until told
    to stop (``stop_event``), having printed the port (``ready``)."""
    server = grpc.aio.server(options=OPTIONS)
    gate_pb2_grpc.add_PermitGateServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = stop_event()
    ready(port)
    await stop.wait()
    await server.stop(1.0)


async def serve_bare(answer_file: Path) -> None:
    await serve_servicer(BareGate(pb.Decision.FromString(answer_file.read_bytes())))


async def serve_gate(db_url: str, keys_dir: Path) -> None:
    from server.app import GateApp

    app = await GateApp.create(db_url=db_url, keys_dir=keys_dir, listen="127.0.0.1:0")
    await app.start()
    await app.first_poll()  # measure the gate on its data, not while it loads
    stop = stop_event()
    print(app.describe(), file=sys.stderr, flush=True)
    ready(app.port)
    await stop.wait()
    await app.stop(1.0)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "bare":
        uvloop.run(serve_bare(Path(argv[1])))
        return 0
    if len(argv) == 3 and argv[0] == "gate":
        uvloop.run(serve_gate(argv[1], Path(argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
