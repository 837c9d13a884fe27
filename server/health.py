"""The gate's health (grpc.health.v1): SERVING only while its data may be relied on.

A load balancer should send checks to a gate that holds verified registry data confirmed within
its staleness bound. So every service name this gate reports is NOT_SERVING before the first
verified load, NOT_SERVING again whenever the data goes stale (the registry unreachable for
longer than ``max_staleness``), SERVING when fresh, and NOT_SERVING for good from the start of a
graceful stop. Checks that still reach a NOT_SERVING gate are answered as always: REVIEW at best.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from server.cache import RegistryCache
from server.periodic import Periodic

__all__ = ["GateHealth"]

log = logging.getLogger(__name__)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GateHealth:
    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        cache: RegistryCache,
        *,
        services: Sequence[str],
        interval: float,
    ) -> None:
        self._servicer = servicer
        self._cache = cache
        self._services = tuple(services)
        self._watch = Periodic("health", interval, self.update, at_once=True)
        self.serving = False

    async def start(self) -> None:
        """Report NOT_SERVING (before the first load), then follow the data's freshness."""
        await self._set(_NOT_SERVING)
        self._watch.start()

    async def update(self) -> None:
        """Report what the cache says now; log each change."""
        serving = self._cache.checkpoint is not None and not self._cache.is_stale()
        if serving == self.serving:
            return
        self.serving = serving
        await self._set(_SERVING if serving else _NOT_SERVING)
        if serving:
            log.info("health: SERVING (registry version %d, fresh)", self._cache.size)
        else:
            log.error(
                "health: NOT_SERVING: registry data not confirmed within %g s",
                self._cache.max_staleness,
            )

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in self._services:
            await self._servicer.set(name, status)

    async def stop(self) -> None:
        """NOT_SERVING from now on (graceful stop): later updates change nothing."""
        await self._watch.close()
        self.serving = False
        await self._servicer.enter_graceful_shutdown()
