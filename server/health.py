"""The gate's health (grpc.health.v1): SERVING only while its data may be relied on.

A load balancer should send checks to a gate that holds verified registry data cosigned within
its staleness bound. So every service name this gate reports is NOT_SERVING before the first
verified load, NOT_SERVING again whenever the data goes stale (the held head's cosignature older
than ``max_staleness``: the registry unreachable, frozen or rolled back; or the held head
superseded by one the gate cannot verify), NOT_SERVING while the decision log is full (every
call then answers UNAVAILABLE), SERVING when fresh and able to log, and NOT_SERVING for good from
the start of a graceful stop. Checks that still reach a NOT_SERVING gate are answered as always:
REVIEW at best, or UNAVAILABLE while the decision log is full.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from server.cache import RegistryCache
from server.decision_log import DecisionLog
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
        decision_log: DecisionLog,
        *,
        services: Sequence[str],
        interval: float,
    ) -> None:
        self._servicer = servicer
        self._cache = cache
        self._decision_log = decision_log
        self._services = tuple(services)
        self._watch = Periodic("health", interval, self.update, at_once=True)
        self.serving = False

    async def start(self) -> None:
        """Report NOT_SERVING (before the first load), then follow the data's freshness."""
        await self._set(_NOT_SERVING)
        self._watch.start()

    def _not_serving_because(self) -> str | None:
        """Why calls cannot be answered as they should now; None when they can."""
        stale = self._cache.stale_because()
        if stale is not None:
            return stale
        if self._decision_log.full:
            return (
                f"the decision log is full ({self._decision_log.waiting} answers wait to be "
                "written): every call answers UNAVAILABLE"
            )
        return None

    async def update(self) -> None:
        """Report what the cache and the decision log say now; log each change."""
        why = self._not_serving_because()
        serving = why is None
        if serving == self.serving:
            return
        self.serving = serving
        await self._set(_SERVING if serving else _NOT_SERVING)
        if serving:
            log.info("health: SERVING (registry version %d, fresh)", self._cache.size)
        else:
            log.error("health: NOT_SERVING: %s", why)

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in self._services:
            await self._servicer.set(name, status)

    async def stop(self) -> None:
        """NOT_SERVING from now on (graceful stop): later updates change nothing."""
        await self._watch.close()
        self.serving = False
        await self._servicer.enter_graceful_shutdown()
