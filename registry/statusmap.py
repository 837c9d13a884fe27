"""The status map: which signed status record is current for each structure, as one root.

The map is the sparse Merkle tree that ``permitgate_client._proofs`` verifies: 256 levels keyed
by ``SHA-256(structure id)``, each entry ``SHA-256(status record envelope)``, a one-entry subtree
hashed as its leaf and an empty one as zeros. Why this tree and not a Merkle tree over sorted ids:
a sorted tree shifts every later leaf when a structure is added, so adding one costs O(n)
hashes, and proving an id absent takes two neighbouring proofs; here an addition, a change or a
removal costs O(log n) hashes (about 25 at a million entries), an absence is one proof, and the
root depends only on the set of entries, never on the order they came in. The price is proofs of
about log2(n) + 2 hashes instead of log2(n), and a root computed from scratch hashes each entry
once plus about 1.4 nodes per entry.

In memory the top ``_TOP`` levels are a heap of (entry count, hash) pairs over ``2**_TOP``
buckets; each bucket keeps its entries in a dict and its subtree is rehashed from them when one
changes (a bucket holds n / 65,536 entries: a handful at a million). An entry costs about 200
bytes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator

from permitgate_client._proofs import (
    MAP_EMPTY,
    MapProof,
    bit,
    map_key,
    map_leaf_hash,
    node_hash,
)

__all__ = ["StatusMap"]

_TOP = 16
_BUCKETS = 1 << _TOP
_Node = tuple[int, bytes]  # (entries below, capped at 2; hash)
_EMPTY_NODE: _Node = (0, MAP_EMPTY)


def _join(left: _Node, right: _Node) -> _Node:
    count = left[0] + right[0]
    if count == 0:
        return _EMPTY_NODE
    if count == 1:  # one entry below: the subtree is that entry's leaf, whatever the depth
        return left if left[0] else right
    return (2, node_hash(left[1], right[1]))


def _subtree(entries: list[tuple[bytes, bytes]], depth: int) -> _Node:
    """The node over ``entries`` (sorted by key, all sharing the first ``depth`` bits)."""
    ints = [int.from_bytes(key) for key, _ in entries]
    return _range(entries, ints, 0, len(entries), depth)


def _range(
    entries: list[tuple[bytes, bytes]], ints: list[int], lo: int, hi: int, depth: int
) -> _Node:
    if lo == hi:
        return _EMPTY_NODE
    if hi - lo == 1:
        key, value = entries[lo]
        return (1, map_leaf_hash(key, value))
    split = _split(ints, lo, hi, depth)
    return _join(
        _range(entries, ints, lo, split, depth + 1), _range(entries, ints, split, hi, depth + 1)
    )


def _split(ints: list[int], lo: int, hi: int, depth: int) -> int:
    """The index of the first of ``ints[lo:hi]`` (sorted, sharing ``depth`` leading bits) whose
    bit ``depth`` is 1."""
    shift = 255 - depth
    threshold = ((ints[lo] >> (shift + 1)) << (shift + 1)) | (1 << shift)
    return bisect_left(ints, threshold, lo, hi)


class StatusMap:
    """A mutable status map: ``set``, ``remove``, ``root``, ``prove``."""

    def __init__(self, entries: Iterable[tuple[str, bytes]] = ()) -> None:
        self._buckets: list[dict[bytes, bytes] | None] = [None] * _BUCKETS
        self._heap: list[_Node] = [_EMPTY_NODE] * (2 * _BUCKETS)
        self._count = 0
        for structure_id, value in entries:
            self._put(map_key(structure_id), value)
        for index in range(_BUCKETS):
            if self._buckets[index]:
                self._heap[_BUCKETS + index] = self._bucket_node(index)
        for i in range(_BUCKETS - 1, 0, -1):
            self._heap[i] = _join(self._heap[2 * i], self._heap[2 * i + 1])

    def __len__(self) -> int:
        return self._count

    def root(self) -> bytes:
        return self._heap[1][1]

    def get(self, structure_id: str) -> bytes | None:
        key = map_key(structure_id)
        bucket = self._buckets[_bucket_of(key)]
        return None if bucket is None else bucket.get(key)

    def set(self, structure_id: str, value: bytes) -> None:
        """Make ``value`` (a record's SHA-256) the current entry of ``structure_id``."""
        if len(value) != 32:
            raise ValueError("a status map value is a 32-byte SHA-256")
        key = map_key(structure_id)
        self._put(key, value)
        self._rehash(_bucket_of(key))

    def remove(self, structure_id: str) -> None:
        key = map_key(structure_id)
        index = _bucket_of(key)
        bucket = self._buckets[index]
        if bucket is not None and bucket.pop(key, None) is not None:
            self._count -= 1
            self._rehash(index)

    def values(self) -> Iterator[bytes]:
        for bucket in self._buckets:
            if bucket:
                yield from bucket.values()

    def prove(self, structure_id: str) -> MapProof:
        """The proof of ``structure_id``'s entry, or of its absence."""
        key = map_key(structure_id)
        index = _bucket_of(key)
        siblings: list[bytes] = []
        node = 1
        for depth in range(_TOP):
            if self._heap[node][0] < 2:
                return MapProof(tuple(siblings), self._single(node))
            child = 2 * node + bit(key, depth)
            siblings.append(self._heap[child ^ 1][1])
            node = child
        entries = sorted((self._buckets[index] or {}).items())
        ints = [int.from_bytes(k) for k, _ in entries]
        lo, hi, depth = 0, len(entries), _TOP
        while hi - lo >= 2:
            split = _split(ints, lo, hi, depth)
            if bit(key, depth):
                siblings.append(_range(entries, ints, lo, split, depth + 1)[1])
                lo = split
            else:
                siblings.append(_range(entries, ints, split, hi, depth + 1)[1])
                hi = split
            depth += 1
        return MapProof(tuple(siblings), entries[lo] if hi > lo else None)

    def _single(self, node: int) -> tuple[bytes, bytes] | None:
        """The one entry under heap ``node`` (None when it is empty)."""
        if self._heap[node][0] == 0:
            return None
        while node < _BUCKETS:
            node = 2 * node if self._heap[2 * node][0] else 2 * node + 1
        bucket = self._buckets[node - _BUCKETS]
        assert bucket is not None and len(bucket) == 1
        return next(iter(bucket.items()))

    def _put(self, key: bytes, value: bytes) -> None:
        index = _bucket_of(key)
        bucket = self._buckets[index]
        if bucket is None:
            bucket = self._buckets[index] = {}
        if key not in bucket:
            self._count += 1
        bucket[key] = value

    def _bucket_node(self, index: int) -> _Node:
        bucket = self._buckets[index]
        if not bucket:
            return _EMPTY_NODE
        return _subtree(sorted(bucket.items()), _TOP)

    def _rehash(self, index: int) -> None:
        node = _BUCKETS + index
        self._heap[node] = self._bucket_node(index)
        node >>= 1
        while node:
            self._heap[node] = _join(self._heap[2 * node], self._heap[2 * node + 1])
            node >>= 1


def _bucket_of(key: bytes) -> int:
    return (key[0] << 8) | key[1]
