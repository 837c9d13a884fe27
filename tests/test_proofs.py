"""The status map and log consistency proofs, against definitions written out independently.

The reference map below follows the definition in ``spec`` word for word (a subtree of no entries
is 32 zero bytes, of one entry its leaf hash, of more the hash of its two halves), with none of
``StatusMap``'s buckets; the reference log tree is RFC 9162's recursive MTH.
"""

from __future__ import annotations

import hashlib

import pytest
from permitgate_client import ForkError, MalformedError, MapMismatchError
from permitgate_client._proofs import MapProof, verify_consistency, verify_map_proof

from registry.merkle import CompactTree, consistency_proof
from registry.statusmap import StatusMap


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_map_root(entries: dict[str, bytes]) -> bytes:
    def node(items: list[tuple[int, bytes, bytes]], depth: int) -> bytes:
        if not items:
            return bytes(32)
        if len(items) == 1:
            _, key, value = items[0]
            return sha(b"\x00" + key + value)
        left = [i for i in items if not (i[0] >> (255 - depth)) & 1]
        right = [i for i in items if (i[0] >> (255 - depth)) & 1]
        return sha(b"\x01" + node(left, depth + 1) + node(right, depth + 1))

    keyed = [
        (int.from_bytes(sha(k.encode()), "big"), sha(k.encode()), v) for k, v in entries.items()
    ]
    return node(keyed, 0)


def ref_log_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return sha(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha(b"\x01" + ref_log_root(leaves[:k]) + ref_log_root(leaves[k:]))


def entries(n: int, salt: str = "") -> dict[str, bytes]:
    return {f"S-{i}": sha(f"{salt}{i}".encode()) for i in range(n)}


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 64, 1000])
def test_map_root_matches_the_definition(n: int) -> None:
    values = entries(n)
    assert StatusMap(values.items()).root() == ref_map_root(values)


def test_map_root_ignores_order_and_follows_every_change() -> None:
    values = entries(300)
    built = StatusMap()
    for key in reversed(list(values)):
        built.set(key, values[key])
    assert built.root() == ref_map_root(values)
    built.set("S-7", sha(b"changed"))
    values["S-7"] = sha(b"changed")
    assert built.root() == ref_map_root(values)
    built.remove("S-8")
    del values["S-8"]
    assert built.root() == ref_map_root(values) and len(built) == 299
    built.remove("S-8")  # absent: nothing changes
    assert built.root() == ref_map_root(values)


@pytest.mark.parametrize("n", [1, 2, 3, 40, 2000])
def test_every_entry_and_absence_proves_through_its_bytes(n: int) -> None:
    values = entries(n)
    tree = StatusMap(values.items())
    root = tree.root()
    for key in list(values)[:200]:
        proof = MapProof.from_bytes(tree.prove(key).to_bytes())
        verify_map_proof(root, key, values[key], proof)
        with pytest.raises(MapMismatchError):
            verify_map_proof(root, key, sha(b"another record"), proof)
        with pytest.raises(MapMismatchError):
            verify_map_proof(root, key, None, proof)
    for key in ("X-1", "S-", "nobody"):
        proof = MapProof.from_bytes(tree.prove(key).to_bytes())
        verify_map_proof(root, key, None, proof)
        with pytest.raises(MapMismatchError):
            verify_map_proof(root, key, sha(b"invented"), proof)


def test_a_proof_for_one_key_does_not_serve_another() -> None:
    values = entries(50)
    tree = StatusMap(values.items())
    proof = tree.prove("S-1")
    with pytest.raises(MapMismatchError):
        verify_map_proof(tree.root(), "S-2", values["S-1"], proof)
    # Nor does it prove S-1 absent under a root where it is present.
    with pytest.raises(MapMismatchError):
        verify_map_proof(tree.root(), "S-1", None, proof)


def test_a_flipped_byte_in_a_proof_fails() -> None:
    values = entries(100)
    tree = StatusMap(values.items())
    data = tree.prove("S-3").to_bytes()
    for position in range(len(data)):
        broken = bytearray(data)
        broken[position] ^= 0x01
        with pytest.raises((MapMismatchError, MalformedError)):
            verify_map_proof(tree.root(), "S-3", values["S-3"], MapProof.from_bytes(bytes(broken)))


def test_truncated_proofs_are_malformed() -> None:
    data = StatusMap(entries(100).items()).prove("S-3").to_bytes()
    for cut in range(len(data)):
        if cut == len(data):
            continue
        with pytest.raises(MalformedError):
            MapProof.from_bytes(data[:cut])


def test_consistency_between_every_pair_of_sizes() -> None:
    leaves = [f"event {i}".encode() for i in range(40)]
    hashes = [sha(b"\x00" + leaf) for leaf in leaves]
    for m in range(0, 33):
        old = CompactTree()
        for h in hashes[:m]:
            old.append(h)
        assert old.root() == ref_log_root(leaves[:m])
        for n in range(m, 40):
            proof = consistency_proof(old, hashes[m:n])
            verify_consistency(m, ref_log_root(leaves[:m]), n, ref_log_root(leaves[:n]), proof)
            if 0 < m < n:
                rewritten = [*leaves[: m - 1], b"rewritten", *leaves[m:n]]
                with pytest.raises(ForkError):
                    verify_consistency(
                        m, ref_log_root(leaves[:m]), n, ref_log_root(rewritten), proof
                    )


def test_consistency_refuses_shrinking_and_equal_size_forks() -> None:
    root = ref_log_root([b"a", b"b"])
    with pytest.raises(ForkError):
        verify_consistency(3, root, 2, root, [])
    with pytest.raises(ForkError):
        verify_consistency(2, root, 2, ref_log_root([b"a", b"c"]), [])
    with pytest.raises(MalformedError):
        verify_consistency(1, ref_log_root([b"a"]), 2, root, [])
