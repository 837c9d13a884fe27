"""RFC 6962 / RFC 9162 Merkle tree hashing against published vectors and an independent MTH.

The leaf inputs, subtree hashes and root hashes are the published test data of the
transparency-dev Merkle library (``transparency-dev/merkle``, ``testonly/constants.go``:
``LeafInputs``, ``NodeHashes``, ``RootHashes``, ``CompactTrees``, ``EmptyRootHash``), which is
the same data set as the certificate-transparency reference implementation's tests.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from registry.merkle import HASH_SIZE, CompactTree, leaf_hash, node_hash, root_of

# transparency-dev/merkle testonly/constants.go LeafInputs()
LEAF_INPUTS: list[bytes] = [
    bytes.fromhex(""),
    bytes.fromhex("00"),
    bytes.fromhex("10"),
    bytes.fromhex("2021"),
    bytes.fromhex("3031"),
    bytes.fromhex("40414243"),
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]

# transparency-dev/merkle testonly/constants.go EmptyRootHash()
EMPTY_ROOT = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

# transparency-dev/merkle testonly/constants.go RootHashes(), indexed by tree size 0..8
ROOT_HASHES: list[bytes] = [
    EMPTY_ROOT,
    bytes.fromhex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    bytes.fromhex("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    bytes.fromhex("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    bytes.fromhex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    bytes.fromhex("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    bytes.fromhex("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    bytes.fromhex("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# transparency-dev/merkle testonly/constants.go NodeHashes(): [level][index]
NODE_HASHES: list[list[bytes]] = [
    [
        bytes.fromhex(h)
        for h in (
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        )
    ],
    [
        bytes.fromhex(h)
        for h in (
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        )
    ],
    [
        bytes.fromhex(h)
        for h in (
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        )
    ],
    [bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# transparency-dev/merkle testonly/constants.go CompactTrees(): perfect-subtree roots, largest
# first, for sizes 0..8 (given there as NodeHashes() coordinates).
_NH = NODE_HASHES
COMPACT_STATES: list[list[bytes]] = [
    [],
    [_NH[0][0]],
    [_NH[1][0]],
    [_NH[1][0], _NH[0][2]],
    [_NH[2][0]],
    [_NH[2][0], _NH[0][4]],
    [_NH[2][0], _NH[1][2]],
    [_NH[2][0], _NH[1][2], _NH[0][6]],
    [_NH[3][0]],
]


# --- an independent reference: RFC 6962 section 2.1 written out with hashlib only ----------


def _ref_mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) over raw entries, straight from the RFC text (no code shared with merkle.py)."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256().digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:  # the largest power of two smaller than n
        k *= 2
    return hashlib.sha256(b"\x01" + _ref_mth(entries[:k]) + _ref_mth(entries[k:])).digest()


def _random_entries(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]


# --- published vectors ----------------------------------------------------------------------


def test_empty_tree_hash() -> None:
    assert root_of([]) == EMPTY_ROOT
    assert CompactTree().root() == EMPTY_ROOT
    assert _ref_mth([]) == EMPTY_ROOT


def test_leaf_hashes_match_published_level_zero() -> None:
    assert [leaf_hash(x) for x in LEAF_INPUTS] == NODE_HASHES[0]


def test_interior_node_hashes_match_published_levels() -> None:
    for level in range(1, len(NODE_HASHES)):
        below = NODE_HASHES[level - 1]
        expected = [node_hash(below[2 * i], below[2 * i + 1]) for i in range(len(below) // 2)]
        assert expected == NODE_HASHES[level], f"level {level}"


@pytest.mark.parametrize("size", range(len(ROOT_HASHES)))
def test_root_of_matches_published_roots(size: int) -> None:
    leaves = [leaf_hash(x) for x in LEAF_INPUTS[:size]]
    assert root_of(leaves) == ROOT_HASHES[size]
    assert _ref_mth(LEAF_INPUTS[:size]) == ROOT_HASHES[size]


def test_compact_tree_matches_published_roots_and_states() -> None:
    tree = CompactTree()
    assert tree.size == 0
    assert tree.state == b""
    for size in range(1, len(ROOT_HASHES)):
        tree.append(leaf_hash(LEAF_INPUTS[size - 1]))
        assert tree.size == size
        assert tree.root() == ROOT_HASHES[size], f"size {size}"
        assert tree.state == b"".join(COMPACT_STATES[size]), f"state at size {size}"


@pytest.mark.parametrize("size", range(len(ROOT_HASHES)))
def test_compact_tree_from_published_state(size: int) -> None:
    tree = CompactTree.from_state(size, b"".join(COMPACT_STATES[size]))
    assert tree.root() == ROOT_HASHES[size]
    if size < len(LEAF_INPUTS):
        tree.append(leaf_hash(LEAF_INPUTS[size]))
        assert tree.root() == ROOT_HASHES[size + 1]


# --- CompactTree against root_of and the independent reference ------------------------------


def test_compact_tree_equals_root_of_for_sizes_0_to_300() -> None:
    rng = random.Random(6962)
    entries = _random_entries(rng, 300)
    leaves = [leaf_hash(e) for e in entries]
    tree = CompactTree()
    assert tree.root() == root_of([])
    for size in range(1, 301):
        tree.append(leaves[size - 1])
        assert tree.size == size
        assert len(tree.state) == HASH_SIZE * size.bit_count()
        expected = root_of(leaves[:size])
        assert tree.root() == expected, f"size {size}"
        # Round trip through the persisted form, then keep appending on the copy.
        again = CompactTree.from_state(tree.size, tree.state)
        assert again.size == size
        assert again.state == tree.state
        assert again.root() == expected
        if size < 300:
            again.append(leaves[size])
            assert again.root() == root_of(leaves[: size + 1])


def test_root_of_equals_independent_mth() -> None:
    rng = random.Random(9162)
    entries = _random_entries(rng, 130)
    for size in [*range(0, 20), 31, 32, 33, 63, 64, 65, 127, 128, 129, 130]:
        assert root_of([leaf_hash(e) for e in entries[:size]]) == _ref_mth(entries[:size])


def test_restore_in_the_middle_then_continue() -> None:
    rng = random.Random(1)
    leaves = [leaf_hash(e) for e in _random_entries(rng, 200)]
    for cut in (0, 1, 7, 64, 100, 199):
        head = CompactTree()
        for leaf in leaves[:cut]:
            head.append(leaf)
        tail = CompactTree.from_state(cut, head.state)
        for leaf in leaves[cut:]:
            tail.append(leaf)
        assert tail.size == 200
        assert tail.root() == root_of(leaves)


def test_leaf_and_node_domain_separation() -> None:
    # RFC 6962 section 2.1: leaves are 0x00-prefixed, interior nodes 0x01-prefixed.
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = bytes(range(32)), bytes(range(32, 64))
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert leaf_hash(a + b) != node_hash(a, b)


@pytest.mark.parametrize(
    ("size", "state", "fragment"),
    [
        (1, b"", "a tree of size 1 has 1 subtree roots, not 0"),
        (3, b"\x00" * 32, "a tree of size 3 has 2 subtree roots, not 1"),
        (0, b"\x00" * 32, "a tree of size 0 has 0 subtree roots, not 1"),
        (2, b"\x00" * 31, "subtree roots must be 32-byte hashes"),
        (3, b"\x00" * 63, "subtree roots must be 32-byte hashes"),
    ],
)
def test_from_state_rejects_inconsistent_state(size: int, state: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        CompactTree.from_state(size, state)


def test_negative_size_rejected() -> None:
    with pytest.raises(ValueError):
        CompactTree(-1, [])
