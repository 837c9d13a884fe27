"""Proofs over the registry's signed heads: log consistency, the status map, timed cosignatures.

A registry head is a C2SP checkpoint of the registry's log with one extension line naming the
status map, signed by the registry key and cosigned by the same key with the time::

    permitgate.example/registry
    1204
    <base64 log root>
    map 17 311 <base64 map root>

    — permitgate.example/registry <base64 keyid || Ed25519 signature>
    — permitgate.example/registry <base64 keyid' || u64 time || Ed25519 signature>

* **Consistency** (RFC 9162 section 2.1.4): a newer head extends an older one when the
  consistency proof between their sizes verifies; a head that does not is a fork.
* **The status map** is a sparse Merkle tree of 256 levels from ``SHA-256(structure id)`` to
  ``SHA-256(signed status record)``, in which a subtree holding one entry is that entry's leaf hash
  and an empty subtree is 32 zero bytes (so it holds one node per entry, not 256). One proof shows
  either that a structure's current record is the one given or that the registry holds none; the
  line ``map <serial> <count> <root>`` binds its root to the head, ``serial`` counting the heads
  the registry signed (a refresh changes the map without growing the log).
* **Cosignatures** follow C2SP tlog-cosignature v1 (signature type 0x04): the registry's
  statement that at ``time`` this was its newest head. Freshness is the age of that time.

Pure: bytes and keys in, typed results or a ``VerificationError`` subclass out. ``spec/map.md``
and ``spec/checkpoint.md`` specify each step; ``spec/vectors`` has cases for every error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from permitgate_client._errors import (
    BadSignatureError,
    ExpiredError,
    ForkError,
    FromTheFutureError,
    MalformedError,
    MapMismatchError,
)
from permitgate_client._times import format_time
from permitgate_client._trust import Checkpoint, VerifierKey, verify_checkpoint

__all__ = [
    "CLOCK_SKEW",
    "MAP_EMPTY",
    "CosignerKey",
    "MapHead",
    "MapProof",
    "RegistryHead",
    "cosignature_message",
    "log_leaf_hash",
    "map_key",
    "map_leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_cosignature",
    "verify_fresh",
    "verify_map_proof",
    "verify_registry_head",
]

HASH_SIZE = 32
MAP_EMPTY = bytes(HASH_SIZE)
"""The hash of an empty subtree of the status map."""
MAP_DEPTH = 256
_COSIGNATURE_V1 = 0x04
_MAP_LINE = re.compile(r"map (0|[1-9][0-9]{0,18}) (0|[1-9][0-9]{0,18}) (\S+)")


def log_leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node: ``SHA-256(0x01 || left || right)`` (the map's too)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# Log consistency (RFC 9162 section 2.1.4.2).


def verify_consistency(
    old_size: int, old_root: bytes, new_size: int, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``ForkError`` unless the tree ``(new_size, new_root)`` extends ``(old_size,
    old_root)`` by the consistency ``proof``; ``MalformedError`` for a proof of the wrong shape.

    Equal sizes need an empty proof and equal roots; the empty tree is extended by every tree.
    """
    if old_size < 0 or new_size < old_size:
        raise ForkError(f"consistency: tree size {new_size} does not extend {old_size}")
    if any(len(h) != HASH_SIZE for h in proof):
        raise MalformedError("consistency proof: hashes are 32 bytes")
    if old_size == new_size:
        if proof:
            raise MalformedError("consistency proof: must be empty between equal sizes")
        if old_root != new_root:
            raise ForkError(f"consistency: two different roots for tree size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise MalformedError("consistency proof: must be empty from the empty tree")
        return
    if not proof:
        raise MalformedError("consistency proof: empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ForkError("consistency: proof longer than the trees")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise ForkError(
            f"consistency: the tree of size {new_size} does not extend the one of size {old_size}"
        )


# The status map.


def map_key(structure_id: str) -> bytes:
    """Where a structure sits in the map: ``SHA-256`` of its id's UTF-8 bytes."""
    return hashlib.sha256(structure_id.encode()).digest()


def map_leaf_hash(key: bytes, value: bytes) -> bytes:
    """A map entry: ``SHA-256(0x00 || key || value)``, ``value`` the record's SHA-256."""
    return hashlib.sha256(b"\x00" + key + value).digest()


def bit(key: bytes, depth: int) -> int:
    """The branch taken at ``depth`` (0 is the root): bits from the most significant down."""
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


@dataclass(frozen=True, slots=True)
class MapProof:
    """The way from the map's root down to where a key's search ends.

    ``siblings[d]`` is the sibling of the node at depth ``d + 1`` on the key's path; the search
    ends at depth ``len(siblings)`` in an empty subtree (``terminal`` None) or in a subtree of
    one entry ``terminal = (key, value)``: the key's own entry, or another's, which proves the key
    absent.
    """

    siblings: tuple[bytes, ...]
    terminal: tuple[bytes, bytes] | None

    def to_bytes(self) -> bytes:
        """``u16 count``, a bitmap of empty siblings, the others, then ``0x00`` or ``0x01 key
        value``. Empty subtrees are common on the way down, so they cost one bit each."""
        count = len(self.siblings)
        bitmap = bytearray((count + 7) // 8)
        kept = []
        for i, sibling in enumerate(self.siblings):
            if sibling == MAP_EMPTY:
                bitmap[i >> 3] |= 1 << (i & 7)
            else:
                kept.append(sibling)
        tail = b"\x00" if self.terminal is None else b"\x01" + self.terminal[0] + self.terminal[1]
        return struct.pack(">H", count) + bytes(bitmap) + b"".join(kept) + tail

    @classmethod
    def from_bytes(cls, data: bytes) -> MapProof:
        """Parse ``to_bytes`` output; ``MalformedError`` for anything else."""
        if len(data) < 3:
            raise MalformedError("map proof: too short")
        (count,) = struct.unpack_from(">H", data)
        if count > MAP_DEPTH:
            raise MalformedError(f"map proof: {count} levels, more than {MAP_DEPTH}")
        at = 2 + (count + 7) // 8
        bitmap = data[2:at]
        if len(bitmap) != (count + 7) // 8:
            raise MalformedError("map proof: truncated")
        if count % 8 and bitmap[-1] >> (count % 8):
            raise MalformedError("map proof: bits set past its last level")
        siblings = []
        for i in range(count):
            if bitmap[i >> 3] >> (i & 7) & 1:
                siblings.append(MAP_EMPTY)
            else:
                siblings.append(data[at : at + HASH_SIZE])
                at += HASH_SIZE
        tail = data[at:]
        if any(len(s) != HASH_SIZE for s in siblings) or tail[:1] not in (b"\x00", b"\x01"):
            raise MalformedError("map proof: truncated")
        if tail[:1] == b"\x00":
            if len(tail) != 1:
                raise MalformedError("map proof: bytes after its end")
            return cls(tuple(siblings), None)
        if len(tail) != 1 + 2 * HASH_SIZE:
            raise MalformedError("map proof: the entry it ends at is not 64 bytes")
        return cls(tuple(siblings), (tail[1:33], tail[33:]))


def _root_from(proof: MapProof, key: bytes, bottom: bytes) -> bytes:
    acc = bottom
    for depth in range(len(proof.siblings) - 1, -1, -1):
        sibling = proof.siblings[depth]
        acc = node_hash(sibling, acc) if bit(key, depth) else node_hash(acc, sibling)
    return acc


def verify_map_proof(root: bytes, structure_id: str, value: bytes | None, proof: MapProof) -> None:
    """Raise ``MapMismatchError`` unless ``proof`` shows, under ``root``, that the current
    record of ``structure_id`` has SHA-256 ``value`` (or, ``value`` None, that there is none)."""
    key = map_key(structure_id)
    depth = len(proof.siblings)
    if proof.terminal is None:
        bottom = MAP_EMPTY
        found: bytes | None = None
    else:
        other, other_value = proof.terminal
        # The entry the search ends at must lie on the key's path.
        if any(bit(other, d) != bit(key, d) for d in range(depth)):
            raise MapMismatchError(f"map proof for {structure_id!r}: ends off the key's path")
        bottom = map_leaf_hash(other, other_value)
        found = other_value if other == key else None
    if _root_from(proof, key, bottom) != root:
        raise MapMismatchError(f"map proof for {structure_id!r}: does not lead to the signed root")
    if value is None and found is not None:
        raise MapMismatchError(f"structure {structure_id!r}: the signed map holds a record of it")
    if value is not None and found != value:
        raise MapMismatchError(
            f"status record of {structure_id!r}: "
            + (
                "the signed map holds no record of it"
                if found is None
                else "not the current one (the signed map holds another)"
            )
        )


# Timed cosignatures (C2SP tlog-cosignature v1).


@dataclass(frozen=True)
class CosignerKey:
    """The registry key in its cosigner role: the same Ed25519 key, signature type 0x04.

    Cosigned messages begin ``cosignature/v1\\n``, checkpoint bodies with the origin and DSSE
    messages with ``DSSEv1``, so one key serves the three roles without one signature ever
    passing for another.
    """

    name: str
    public_key: bytes

    @classmethod
    def of(cls, key: VerifierKey) -> CosignerKey:
        """The registry key ``key`` as a cosigner."""
        return cls(key.name, key.public_key)

    @property
    def id(self) -> bytes:
        """The C2SP key id of the cosigner key: 4 bytes of SHA-256 over name, 0x04 and key."""
        material = self.name.encode() + b"\n" + bytes([_COSIGNATURE_V1]) + self.public_key
        return hashlib.sha256(material).digest()[:4]


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    """What a cosignature signs: the header line, the time line, the checkpoint body."""
    return b"cosignature/v1\ntime %d\n" % timestamp + body


def verify_cosignature(note: bytes, key: CosignerKey) -> datetime | None:
    """The newest time ``key`` cosigned ``note``'s body at, or None when it has no cosignature
    by ``key``; ``BadSignatureError`` when a line naming ``key`` does not verify."""
    text = note.decode("utf-8", errors="replace")
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedError("note: no blank line before the signatures")
    body = text[: split + 1].encode()
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    newest: int | None = None
    prefix = f"— {key.name} "
    for line in text[split + 2 :].splitlines():
        if not line.startswith(prefix):
            continue
        try:
            blob = base64.b64decode(line[len(prefix) :], validate=True)
        except binascii.Error as exc:
            raise MalformedError("note: signature is not base64") from exc
        if blob[:4] != key.id:
            continue  # the same name with another key id: the checkpoint signature itself
        if len(blob) != 4 + 8 + 64:
            raise MalformedError("cosignature: not 76 bytes")
        (timestamp,) = struct.unpack(">Q", blob[4:12])
        if timestamp >= 1 << 63:
            raise MalformedError("cosignature: time out of range")
        try:
            public.verify(blob[12:], cosignature_message(body, timestamp))
        except InvalidSignature as exc:
            raise BadSignatureError(f"cosignature by {key.name} does not verify") from exc
        newest = timestamp if newest is None else max(newest, timestamp)
    return None if newest is None else datetime.fromtimestamp(newest, UTC)


# The registry head: a checkpoint, its status map, its cosigned time.


@dataclass(frozen=True, slots=True)
class MapHead:
    """The status map a head commits to: how many heads before it, entries, root."""

    serial: int
    count: int
    root: bytes

    def line(self) -> str:
        """The checkpoint extension line that carries this map: ``map <serial> <count> <root>``."""
        return f"map {self.serial} {self.count} {base64.b64encode(self.root).decode()}"

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> MapHead:
        """The map line of ``checkpoint`` (its first extension line); ``MalformedError`` when
        there is none or it is not one."""
        if not checkpoint.extensions:
            raise MalformedError("checkpoint: no status map line")
        m = _MAP_LINE.fullmatch(checkpoint.extensions[0])
        if m is None:
            raise MalformedError(f"checkpoint: bad status map line {checkpoint.extensions[0]!r}")
        try:
            root = base64.b64decode(m.group(3), validate=True)
        except binascii.Error as exc:
            raise MalformedError("checkpoint: status map root is not base64") from exc
        if len(root) != HASH_SIZE:
            raise MalformedError("checkpoint: status map root is not 32 bytes")
        return cls(int(m.group(1)), int(m.group(2)), root)


@dataclass(frozen=True, slots=True)
class RegistryHead:
    """A verified registry head: the checkpoint, its map, and when it was last cosigned."""

    note: bytes
    checkpoint: Checkpoint
    map: MapHead
    cosigned_at: datetime | None

    @property
    def size(self) -> int:
        """The log's size at this head: the registry version."""
        return self.checkpoint.size

    @property
    def order(self) -> tuple[int, int]:
        """Heads sort by this: a later head has a larger serial, and never a smaller log."""
        return self.map.serial, self.checkpoint.size

    def same_head(self, other: RegistryHead) -> bool:
        """Both notes sign the same checkpoint body (cosignatures may differ)."""
        return self.checkpoint == other.checkpoint


def verify_registry_head(note: bytes, key: VerifierKey) -> RegistryHead:
    """Verify a head: the registry's signature, its origin (the key's name), its map line, and
    its newest cosignature by the same key (None when it carries none)."""
    checkpoint = verify_checkpoint(note, key, origin=key.name)
    head = MapHead.of(checkpoint)
    cosigned_at = verify_cosignature(note, CosignerKey.of(key))
    return RegistryHead(note, checkpoint, head, cosigned_at)


# Freshness: the age of a head's cosigned time.

CLOCK_SKEW = timedelta(seconds=60)
"""How far a cosigned time may lie after the verifier's clock: two machines' clocks differ a
little, and a cosigned time is whole seconds, rounded down."""


def verify_fresh(head: RegistryHead, *, now: datetime, max_age: timedelta) -> timedelta:
    """The age of ``head``'s data at ``now`` (``now`` minus its cosigned time), once it is shown
    fresh: ``ExpiredError`` when the head carries no cosignature or one older than ``max_age``,
    ``FromTheFutureError`` when it is cosigned more than ``CLOCK_SKEW`` after ``now`` (the
    verifier's clock, or the registry's, is wrong: the age cannot be told)."""
    if now.utcoffset() is None:
        raise ValueError("now: give a timezone-aware datetime")
    if head.cosigned_at is None:
        raise ExpiredError(
            f"registry head {head.map.serial} (version {head.size}) carries no cosignature: "
            "its age cannot be shown"
        )
    age = now - head.cosigned_at
    if age < -CLOCK_SKEW:
        raise FromTheFutureError(
            f"registry head {head.map.serial} is cosigned at {format_time(head.cosigned_at)}, "
            f"{_seconds(-age)} after now ({format_time(now)}): check the clocks"
        )
    if age > max_age:
        raise ExpiredError(
            f"registry head {head.map.serial} (version {head.size}) was last cosigned at "
            f"{format_time(head.cosigned_at)}, {_seconds(age)} before {format_time(now)}: "
            f"older than {_seconds(max_age)}"
        )
    return age


def _seconds(span: timedelta) -> str:
    return f"{span.total_seconds():g} s"
