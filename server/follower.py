"""Keeps the gate's cache in step with the registry database.

Every ``interval`` seconds the follower reads the newest checkpoint and the status records signed
since its last look (a larger tree size, or re-signed later in place), verifies them off the
event loop, and installs checkpoint and records together on the loop, so a request never sees a
record newer than the checkpoint it would cite. A poll that succeeds confirms freshness; one
that fails does not, and after ``max_staleness`` the gate answers REVIEW (``REGISTRY_STALE``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from permitgate_client import VerificationError
from permitgate_client.formats import Checkpoint
from sqlalchemy import func, or_, select

from registry.storage import CheckpointRow, Database, EventRow, StatusRow
from server.cache import CachedStatus, RegistryCache
from server.periodic import Periodic

__all__ = ["RegistryFollower"]


@dataclass(frozen=True, slots=True)
class _Update:
    checkpoint: Checkpoint
    note: bytes
    records: list[CachedStatus]
    rejected: list[str]  # structure ids whose new record failed verification
    last_events: list[tuple[str, int]]  # (structure id, index of its last event) since held


log = logging.getLogger(__name__)


class RegistryFollower:
    def __init__(self, db: Database, cache: RegistryCache, *, interval: float = 1.0) -> None:
        self._db = db
        self._cache = cache
        self._poller = Periodic("registry-follower", interval, self._poll_logged)
        # A thread of its own: notices waiting on a busy database must not delay the follower.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="registry-follower")
        self.rejected = 0
        self._reported: set[tuple[str, str]] = set()

    def _read(self, held: int, newest: datetime | None) -> _Update | None:
        """In a worker thread: the newest checkpoint and the records signed since the last look.

        That is records showing a tree size above ``held``, and records re-signed in place
        (``registry refresh``), whose ``next_update`` is later than the ``newest`` held; and, for
        each structure the log changed since ``held``, the index of its last event, so that a
        record withheld or swapped for an older one is noticed.
        """
        with self._db.snapshot() as session:
            note = session.scalar(
                select(CheckpointRow.note).order_by(CheckpointRow.size.desc()).limit(1)
            )
            if note is None:
                raise VerificationError("registry: no checkpoint (is it initialised?)")
            checkpoint = self._cache.verify_checkpoint(note)
            changed = StatusRow.tree_size > held
            if newest is not None:
                changed = or_(changed, StatusRow.next_update > newest)
            rows = session.execute(
                select(StatusRow.structure_id, StatusRow.envelope).where(changed),
                execution_options={"yield_per": 5000},
            )
            accepted, rejected = self._cache.verify_records(
                ((sid, envelope) for sid, envelope in rows), checkpoint
            )
            last_events: list[tuple[str, int]] = []
            if checkpoint.size > held:
                last_events = [
                    (sid, last)
                    for sid, last in session.execute(
                        select(EventRow.structure_id, func.max(EventRow.seq))
                        .where(EventRow.seq >= held, EventRow.seq < checkpoint.size)
                        .group_by(EventRow.structure_id)
                    )
                ]
        if (
            not accepted
            and not rejected
            and checkpoint.size == held
            and self._cache.checkpoint is not None
        ):
            return None
        for item in rejected:
            key = (item.structure_id, item.why)
            if key not in self._reported:  # say it once, not at every poll
                self._reported.add(key)
                log.error("registry: rejected status record of %s: %s", *key)
        self.rejected += len(rejected)
        return _Update(checkpoint, note, accepted, [r.structure_id for r in rejected], last_events)

    async def poll(self) -> int:
        """One round; returns how many records were installed. Raises when the poll failed."""
        started = time.monotonic()
        update = await asyncio.get_running_loop().run_in_executor(
            self._thread, self._read, self._cache.size, self._cache.newest_next_update
        )
        taken = 0
        if update is not None:
            taken = self._cache.install(update.checkpoint, update.note, update.records)
            doubtful = self._cache.doubt(update.rejected, update.last_events)
            log.info(
                "registry: version %d, %d status records updated", update.checkpoint.size, taken
            )
            if doubtful:
                log.error(
                    "registry: %d structures lack a genuine, current status record; "
                    "they answer REVIEW until one arrives",
                    doubtful,
                )
        self._cache.confirm_fresh(started)
        return taken

    async def _poll_logged(self) -> None:
        try:
            await self.poll()
        except Exception as exc:  # keep following; staleness speaks for the failure
            log.warning("registry: poll failed: %s", exc)

    def start(self) -> None:
        self._poller.start()

    async def close(self) -> None:
        await self._poller.close()
        self._thread.shutdown(wait=False, cancel_futures=True)
