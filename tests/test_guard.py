"""``GuardedServer`` never loses a registration silently.

Generated ``add_*_to_server`` code registers a service twice (generic handler, then by name):
the guarded registration by name is served, and ``check`` passes. A service registered only as
a generic handler, which the guard cannot guard, makes ``check`` raise, naming it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.guard import GuardedServer, MalformedRequests, UnguardedService


async def _echo(request: bytes, context: Any) -> bytes:
    return request


class _Anonymous:
    """A generic handler (``grpc.GenericRpcHandler``) that does not say which service it serves."""

    def service(self, handler_call_details: Any) -> None:
        return None


def test_generated_registration_is_served_guarded_and_checks() -> None:
    async def scenario() -> int:
        server = grpc.aio.server()
        guarded = GuardedServer(server, MalformedRequests())
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), guarded)
        guarded.check()  # the generic registration was made again, guarded, by name
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                with pytest.raises(grpc.aio.AioRpcError) as garbage:
                    await channel.unary_unary("/grpc.health.v1.Health/Check")(b"\xff", timeout=5)
            assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert guarded.services == ["grpc.health.v1.Health"]
            assert guarded.malformed.total == 1
            return int(reply.status)
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == health_pb2.HealthCheckResponse.SERVING


def test_generic_only_registration_makes_check_raise_naming_it() -> None:
    async def scenario() -> None:
        server = grpc.aio.server()
        guarded = GuardedServer(server, MalformedRequests())
        echo = grpc.unary_unary_rpc_method_handler(_echo)
        guarded.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("demo.Echo", {"Say": echo}), _Anonymous())
        )
        # Another service registered by name matches neither.
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), guarded)
        with pytest.raises(UnguardedService, match=r"demo\.Echo") as raised:
            guarded.check()
        assert "_Anonymous" in str(raised.value)
        assert "add_registered_method_handlers" in str(raised.value)
        # Registered by name afterwards: only the handler that names no service is left.
        guarded.add_registered_method_handlers("demo.Echo", {"Say": echo})
        with pytest.raises(UnguardedService) as still:
            guarded.check()
        assert "demo.Echo" not in str(still.value) and "_Anonymous" in str(still.value)

    asyncio.run(scenario())
