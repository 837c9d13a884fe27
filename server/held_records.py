"""The verified records a gate holds, as a mapping that a change copies only in part.

The verifier never changes the mapping the cache answers from: each new head makes a new one,
which the cache takes whole (``server.verifier``). Copying a whole dict for that holds the GIL
for the whole copy, 25-55 ms at a million structures, and the event loop answers nothing
meanwhile. ``HeldRecords`` splits the records into ``SHARDS`` dicts by the id's hash; a change
copies only the shards it touches (about a thousand entries each at a million), so a head that
changes one record costs about 0.1 ms there (``benchmarks/micro/test_party_index.py``).

Reads cost one more index than a dict's. The shards are never changed once the mapping is
made, so one mapping may be read by the event loop while the verifier makes the next.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import TypeVar, overload

from server.cache import CachedStatus

__all__ = ["SHARDS", "HeldRecords"]

SHARDS = 1024
_MASK = SHARDS - 1
T = TypeVar("T")


class HeldRecords(Mapping[str, CachedStatus]):
    """Structure id -> verified record, immutable; ``changed`` makes the next one."""

    __slots__ = ("_length", "_shards")

    def __init__(self, records: Mapping[str, CachedStatus] | None = None) -> None:
        shards: list[dict[str, CachedStatus]] = [{} for _ in range(SHARDS)]
        for structure_id, status in (records or {}).items():
            shards[hash(structure_id) & _MASK][structure_id] = status
        self._shards = shards
        self._length = sum(map(len, shards))

    def changed(
        self, records: Mapping[str, CachedStatus], removed: Iterable[str] = ()
    ) -> HeldRecords:
        """A new mapping: this one with ``records`` set and ``removed`` taken out. Only the
        shards they fall in are copied; this one is left as it was."""
        shards = list(self._shards)
        copied: set[int] = set()
        length = self._length
        for structure_id, status in records.items():
            shard = self._copy(shards, copied, hash(structure_id) & _MASK)
            length += structure_id not in shard
            shard[structure_id] = status
        for structure_id in removed:
            index = hash(structure_id) & _MASK
            if structure_id in shards[index]:
                self._copy(shards, copied, index).pop(structure_id)
                length -= 1
        made = HeldRecords.__new__(HeldRecords)
        made._shards, made._length = shards, length
        return made

    @staticmethod
    def _copy(
        shards: list[dict[str, CachedStatus]], copied: set[int], index: int
    ) -> dict[str, CachedStatus]:
        if index not in copied:
            shards[index] = dict(shards[index])
            copied.add(index)
        return shards[index]

    # --- Mapping ---------------------------------------------------------------------------

    def __getitem__(self, structure_id: str) -> CachedStatus:
        return self._shards[hash(structure_id) & _MASK][structure_id]

    @overload
    def get(self, structure_id: str, /) -> CachedStatus | None: ...
    @overload
    def get(self, structure_id: str, default: CachedStatus | T, /) -> CachedStatus | T: ...
    def get(self, structure_id: str, default: object = None) -> object:
        return self._shards[hash(structure_id) & _MASK].get(structure_id, default)

    def __contains__(self, structure_id: object) -> bool:
        return isinstance(structure_id, str) and (
            structure_id in self._shards[hash(structure_id) & _MASK]
        )

    def __iter__(self) -> Iterator[str]:
        for shard in self._shards:
            yield from shard

    def items(self) -> ItemsView[str, CachedStatus]:
        return _Items(self)

    def values(self) -> ValuesView[CachedStatus]:
        return _Values(self)

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"HeldRecords({self._length} structures)"


class _Items(ItemsView[str, CachedStatus]):
    """The pairs, shard by shard (not a lookup per id as ``Mapping``'s view does)."""

    _mapping: HeldRecords

    def __iter__(self) -> Iterator[tuple[str, CachedStatus]]:
        for shard in self._mapping._shards:
            yield from shard.items()


class _Values(ValuesView[CachedStatus]):
    _mapping: HeldRecords

    def __iter__(self) -> Iterator[CachedStatus]:
        for shard in self._mapping._shards:
            yield from shard.values()
