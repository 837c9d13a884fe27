"""``Client.check_many`` against a gate that cannot be reached raises ``UnavailableError``, every
time: gRPC closing the request stream when the call fails is not the caller's error (it once
surfaced, about every other run, as a bare ``GeneratorExit``).
"""

from __future__ import annotations

import socket

import pytest
from permitgate_client import Check, Client, UnavailableError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_check_many_on_an_unreachable_gate_is_unavailable_every_time() -> None:
    target = f"127.0.0.1:{_closed_port()}"
    checks = [Check.connection(f"S-{i}", utility="water") for i in range(50)]
    for _ in range(20):
        with Client(target, timeout=5.0) as client, pytest.raises(UnavailableError):
            list(client.check_many(checks))
