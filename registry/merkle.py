"""The registry log's Merkle tree, hashed as in RFC 6962 / RFC 9162 section 2.1.

Leaves are ``SHA-256(0x00 || event)``, interior nodes ``SHA-256(0x01 || left || right)``, and the
empty tree hashes to ``SHA-256("")``. ``CompactTree`` keeps only the roots of the perfect subtrees
that make up the log (one per set bit of its size), so appending costs O(log n) hashes and the
state to persist is at most 64 hashes. ``root_of`` is the RFC's recursive definition, kept as the
independent reference the verifier and the tests recompute from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["HASH_SIZE", "CompactTree", "leaf_hash", "node_hash", "root_of"]

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
