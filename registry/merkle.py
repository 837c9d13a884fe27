"""The registry log's Merkle tree, hashed as in RFC 6962 / RFC 9162 section 2.1.

Leaves are ``SHA-256(0x00 || event)``, interior nodes ``SHA-256(0x01 || left || right)``, and the
empty tree hashes to ``SHA-256("")``. ``CompactTree`` keeps only the roots of the perfect subtrees
that make up the log (one per set bit of its size), so appending costs O(log n) hashes and the
state to persist is at most 64 hashes. ``root_of`` is the RFC's recursive definition, kept as the
independent reference the verifier and the tests recompute from. ``consistency_proof`` makes the
RFC's proof that a larger tree extends a smaller one from the smaller tree's subtree roots and
the leaves added since: the registry keeps no other tree nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["HASH_SIZE", "CompactTree", "consistency_proof", "leaf_hash", "node_hash", "root_of"]

HASH_SIZE = 32
_EMPTY = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves, by the RFC's recursive definition."""
    n = len(leaves)
    if n == 0:
        return _EMPTY
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


class CompactTree:
    """An append-only Merkle tree that remembers only its perfect-subtree roots."""

    __slots__ = ("_size", "_stack")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if size < 0 or len(stack) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} subtree roots, not {len(stack)}"
            )
        if any(len(h) != HASH_SIZE for h in stack):
            raise ValueError("subtree roots must be 32-byte hashes")
        self._size = size
        self._stack = list(stack)

    @classmethod
    def from_state(cls, size: int, state: bytes) -> CompactTree:
        """Rebuild from ``size`` and the bytes ``state`` returned earlier."""
        stack = [state[i : i + HASH_SIZE] for i in range(0, len(state), HASH_SIZE)]
        return cls(size, stack)

    @property
    def size(self) -> int:
        return self._size

    @property
    def state(self) -> bytes:
        """The subtree roots, largest first, concatenated: what to persist."""
        return b"".join(self._stack)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (already ``leaf_hash``-ed)."""
        stack = self._stack
        stack.append(leaf)
        carry = self._size
        while carry & 1:
            right = stack.pop()
            stack[-1] = node_hash(stack[-1], right)
            carry >>= 1
        self._size += 1

    def root(self) -> bytes:
        if not self._stack:
            return _EMPTY
        acc = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            acc = node_hash(left, acc)
        return acc


def consistency_proof(old: CompactTree, added: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 ``PROOF(m, D[n])`` for ``m = old.size`` and ``n = m + len(added)``.

    ``old`` gives the tree of size ``m`` (its subtree roots), ``added`` the leaf hashes after it.
    Every node the proof needs lies either wholly in the old tree, where it is one of its subtree
    roots or the root of a run of them, or wholly among the added leaves, so nothing else is
    needed. Costs O(len(added)) hashes.
    """
    m = old.size
    n = m + len(added)
    if m == 0 or m == n:
        return []
    perfect: dict[tuple[int, int], bytes] = {}
    suffix: list[tuple[int, bytes]] = []  # (offset, subtree root), largest first
    offset = 0
    for i, size in enumerate(_subtree_sizes(m)):
        perfect[(offset, offset + size)] = old._stack[i]
        suffix.append((offset, old._stack[i]))
        offset += size

    def mth(lo: int, hi: int) -> bytes:
        if lo >= m:
            return root_of(added[lo - m : hi - m])
        if (lo, hi) in perfect:
            return perfect[(lo, hi)]
        if hi != m:
            raise AssertionError(f"node [{lo}, {hi}) straddles the old tree's end {m}")
        tail = [h for start, h in suffix if start >= lo]
        acc = tail[-1]
        for left in reversed(tail[:-1]):
            acc = node_hash(left, acc)
        return acc

    def subproof(lo: int, hi: int, whole: bool) -> list[bytes]:
        if m - lo == hi - lo:
            return [] if whole else [mth(lo, hi)]
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m - lo <= k:
            return [*subproof(lo, lo + k, whole), mth(lo + k, hi)]
        return [*subproof(lo + k, hi, False), mth(lo, lo + k)]

    return subproof(0, n, True)


def _subtree_sizes(size: int) -> list[int]:
    """The sizes of the perfect subtrees making up a tree of ``size`` leaves, largest first."""
    return [1 << b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
