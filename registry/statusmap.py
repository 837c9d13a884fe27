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
from collections.abc import Iterable, Iterator, Mapping, Sequence

from permitgate_client._proofs import (
    MAP_EMPTY,
    MapProof,
    bit,
    map_key,
    map_leaf_hash,
    node_hash,
)

__all__ = [
    "BUCKETS",
    "BucketItem",
    "MapTop",
    "StatusMap",
    "bucket_item",
    "bucket_node",
    "bucket_of",
    "diff_bytes",
    "entry_in",
    "parse_diff",
]

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

    def top_bytes(self) -> bytes:
        """Each bucket's item (``BucketItem``), in bucket order (``MapTop.from_bytes`` reads it)."""
        return b"".join(_item_bytes(self.bucket_state(i)) for i in range(_BUCKETS))

    def bucket_state(self, index: int) -> tuple[int, bytes]:
        """Bucket ``index``'s ``BucketItem``: ``(entry count, node hash)``, or ``(1, key ||
        value)`` for a bucket of one entry."""
        bucket = self._buckets[index]
        if not bucket:
            return 0, MAP_EMPTY
        if len(bucket) == 1:
            key, value = next(iter(bucket.items()))
            return 1, key + value
        return len(bucket), self._heap[_BUCKETS + index][1]

    def bucket_entries(self, index: int) -> bytes:
        """Bucket ``index``'s entries as ``key || value`` pairs in ascending key order."""
        return b"".join(k + v for k, v in sorted((self._buckets[index] or {}).items()))

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


# --- The map in two tiers: its top (one node per bucket) and each bucket's entries ----------------
#
# A gate that does not hold every record holds the map's *top*: the state of each of the 65,536
# buckets (the first 16 bits of the key). Checked against a head's signed root and count, the top
# proves each bucket's node; a bucket's entries (its keys and values, ``bucket_entries``) are then
# proved by hashing to that node, and with them every record of the bucket, or the absence of a
# structure from it. The top changes only where buckets change, so a gate can follow a new head
# by the buckets that changed (``MapTop.with_buckets``): if the result gives the new root, no
# other bucket changed.
#
# A bucket is carried as a ``BucketItem``: its entry count, and its node, except that a bucket of
# one entry carries the entry itself (``key || value``). The map hashes a one-entry subtree as its
# leaf at any depth, so the root alone does not say which bucket a lone entry sits in: a top that
# moved it to an empty neighbouring bucket would give the same root and "prove" it absent from its
# own. With the entry in the item, its key must lie in the bucket that carries it.

BUCKETS = _BUCKETS
_COUNT = 4  # bytes of a bucket's entry count in a top or diff
_ENTRY = 64  # key, value

BucketItem = tuple[int, bytes]
"""A bucket as a top or diff carries it: ``(entry count, node hash)``, or ``(1, key || value)``
for a bucket of one entry."""


def bucket_of(structure_id: str) -> int:
    """The bucket a structure's entry sits in: the first 16 bits of its map key."""
    return _bucket_of(map_key(structure_id))


def _pairs(entries: bytes, index: int) -> list[tuple[bytes, bytes]]:
    """``entries`` as ``(key, value)`` pairs; ``ValueError`` when they are not sorted, repeat a
    key, or lie outside bucket ``index``."""
    if len(entries) % _ENTRY:
        raise ValueError(f"bucket {index}: {len(entries)} bytes is not a list of entries")
    pairs = [
        (entries[i : i + 32], entries[i + 32 : i + _ENTRY]) for i in range(0, len(entries), _ENTRY)
    ]
    previous = b""
    for key, _ in pairs:
        if key <= previous:
            raise ValueError(f"bucket {index}: keys are not in ascending order")
        if _bucket_of(key) != index:
            raise ValueError(f"bucket {index}: holds a key of bucket {_bucket_of(key)}")
        previous = key
    return pairs


def bucket_node(entries: bytes, index: int) -> tuple[int, bytes]:
    """``(entry count, node hash)`` of bucket ``index`` holding ``entries`` (``bucket_entries``
    bytes: ``key || value`` pairs in ascending key order); ``ValueError`` when they are not
    sorted, repeat a key, or lie outside the bucket."""
    pairs = _pairs(entries, index)
    if not pairs:
        return 0, MAP_EMPTY
    return len(pairs), _subtree(pairs, _TOP)[1]


def bucket_item(entries: bytes, index: int) -> BucketItem:
    """The ``BucketItem`` of bucket ``index`` holding ``entries`` (read as ``bucket_node`` does)."""
    count, node = bucket_node(entries, index)
    return (1, entries) if count == 1 else (count, node)


def entry_in(entries: bytes, key: bytes) -> bytes | None:
    """The value of ``key`` among ``bucket_entries`` bytes (None: the bucket does not hold it)."""
    for i in range(0, len(entries), _ENTRY):
        if entries[i : i + 32] == key:
            return entries[i + 32 : i + _ENTRY]
    return None


def _item_node(index: int, item: BucketItem) -> bytes:
    """The node of ``item`` as bucket ``index``; ``ValueError`` unless it can be that bucket's:
    empty exactly when its count is 0, and a lone entry's key in that bucket."""
    count, payload = item
    if not 0 <= index < _BUCKETS:
        raise ValueError(f"no bucket {index}")
    if count == 1:
        if len(payload) != _ENTRY or _bucket_of(payload[:32]) != index:
            raise ValueError(f"bucket {index}: its one entry is not an entry of this bucket")
        return map_leaf_hash(payload[:32], payload[32:])
    if len(payload) != 32 or (count == 0) != (payload == MAP_EMPTY):
        raise ValueError(f"bucket {index}: count {count} with node {payload.hex()[:16]}…")
    return payload


def _item_bytes(item: BucketItem) -> bytes:
    return item[0].to_bytes(_COUNT, "big") + item[1]


def _read_items(data: bytes, *, indexed: bool) -> Iterator[tuple[int, BucketItem]]:
    """The items of a top (in bucket order) or of a diff (each after its 2-byte bucket index)."""
    position, index = 0, -1
    while position < len(data):
        if indexed:
            index = int.from_bytes(data[position : position + 2])
            position += 2
        else:
            index += 1
        count = int.from_bytes(data[position : position + _COUNT])
        position += _COUNT
        size = _ENTRY if count == 1 else 32
        payload = data[position : position + size]
        if len(payload) != size:
            raise ValueError(f"bucket {index}: cut short")
        position += size
        yield index, (count, payload)


class MapTop:
    """The top of a status map: each bucket's count and node, and the nodes above.

    Built from untrusted bytes; believe it only once ``gives`` the root and count a verified
    head signs. Then each bucket's node is proved, and so is a lone entry's bucket; a count of
    two or more is not (the root binds only 0, 1 and "more"), so it serves only to compare with
    the count of entries that hash to the node."""

    __slots__ = ("_counts", "_heap", "_lone")

    def __init__(self, items: Sequence[BucketItem]) -> None:
        """``ValueError`` unless ``items`` are 65,536 buckets' (``BucketItem``), in order."""
        if len(items) != _BUCKETS:
            raise ValueError(f"a map top has {_BUCKETS} buckets, not {len(items)}")
        self._counts = [count for count, _ in items]
        self._lone: dict[int, bytes] = {}
        self._heap: list[_Node] = [_EMPTY_NODE] * (2 * _BUCKETS)
        for index, item in enumerate(items):
            self._put(index, item)
        for i in range(_BUCKETS - 1, 0, -1):
            self._heap[i] = _join(self._heap[2 * i], self._heap[2 * i + 1])

    def _put(self, index: int, item: BucketItem) -> None:
        node = _item_node(index, item)
        count = item[0]
        self._counts[index] = count
        if count == 1:
            self._lone[index] = item[1]
        else:
            self._lone.pop(index, None)
        self._heap[_BUCKETS + index] = (min(count, 2), node) if count else _EMPTY_NODE

    @classmethod
    def from_bytes(cls, data: bytes) -> MapTop:
        """The top encoded by ``StatusMap.top_bytes``; ``ValueError`` when it is not one."""
        return cls([item for _, item in _read_items(data, indexed=False)])

    def __len__(self) -> int:
        return sum(self._counts)

    def root(self) -> bytes:
        return self._heap[1][1]

    def gives(self, root: bytes, count: int) -> bool:
        """Whether this top is the one of a map with ``root`` and ``count`` entries."""
        return self.root() == root and len(self) == count

    def bucket(self, index: int) -> tuple[int, bytes]:
        """``(entry count, node hash)`` of bucket ``index`` (what ``bucket_node`` gives)."""
        return self._counts[index], self._heap[_BUCKETS + index][1]

    def item(self, index: int) -> BucketItem:
        count = self._counts[index]
        return (1, self._lone[index]) if count == 1 else (count, self._heap[_BUCKETS + index][1])

    def with_buckets(self, changes: Mapping[int, BucketItem]) -> MapTop:
        """A new top: this one with ``changes`` (bucket index to item) applied; ``ValueError``
        for an item that cannot be its bucket's."""
        top = MapTop.__new__(MapTop)
        top._counts = list(self._counts)
        top._heap = list(self._heap)
        top._lone = dict(self._lone)
        for index, item in changes.items():
            top._put(index, item)
            position = (_BUCKETS + index) >> 1
            while position:
                top._heap[position] = _join(top._heap[2 * position], top._heap[2 * position + 1])
                position >>= 1
        return top

    def to_bytes(self) -> bytes:
        return b"".join(_item_bytes(self.item(i)) for i in range(_BUCKETS))


def diff_bytes(changes: Mapping[int, BucketItem]) -> bytes:
    """``changes`` (bucket index to item) as ``index(2) count(4) node(32) | entry(64)`` items."""
    return b"".join(i.to_bytes(2, "big") + _item_bytes(changes[i]) for i in sorted(changes))


def parse_diff(data: bytes) -> dict[int, BucketItem]:
    """The changes ``diff_bytes`` encodes; ``ValueError`` when ``data`` is not such a list (or
    names an item that cannot be its bucket's)."""
    changes: dict[int, BucketItem] = {}
    for index, item in _read_items(data, indexed=True):
        _item_node(index, item)
        changes[index] = item
    return changes
