"""The status map in two tiers (``MapTop``, bucket entries, diffs) against the whole map.

Random sets of structures, then random additions, changes and removals. Each tier is checked by
a path of its own: the map's nodes recomputed here from their definition (an empty subtree is
32 zero bytes, one entry is its leaf ``SHA-256(0x00||key||value)``, more are
``SHA-256(0x01||left||right)``), and each entry read from a bucket checked by the client's
verifier against the map proof of the whole map. Ids are drawn from buckets that hold several,
so that buckets with many entries, one and none are all tried.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from permitgate_client._proofs import verify_map_proof

from registry.redis_layout import serial_bytes, serial_of
from registry.statusmap import (
    BUCKETS,
    MapTop,
    StatusMap,
    bucket_node,
    bucket_of,
    diff_bytes,
    entry_in,
    parse_diff,
)

EMPTY = bytes(32)


def key_of(structure_id: str) -> bytes:
    return hashlib.sha256(structure_id.encode()).digest()


def bucket_by_hand(structure_id: str) -> int:
    return int.from_bytes(key_of(structure_id)[:2], "big")


def node_by_hand(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
    """The map node over ``entries`` (all sharing ``depth`` leading key bits), by definition."""
    if not entries:
        return EMPTY
    if len(entries) == 1:
        key, value = entries[0]
        return hashlib.sha256(b"\x00" + key + value).digest()
    left = [e for e in entries if not e[0][depth // 8] >> (7 - depth % 8) & 1]
    right = [e for e in entries if e[0][depth // 8] >> (7 - depth % 8) & 1]
    return hashlib.sha256(
        b"\x01" + node_by_hand(left, depth + 1) + node_by_hand(right, depth + 1)
    ).digest()


@cache
def crowded_ids() -> tuple[str, ...]:
    """Ids from the 24 fullest buckets among 200,000 (about 10 an id's bucket), and a few
    alone."""
    by_bucket: dict[int, list[str]] = {}
    for n in range(200_000):
        sid = f"S-{n}"
        by_bucket.setdefault(bucket_by_hand(sid), []).append(sid)
    fullest = sorted(by_bucket.values(), key=len, reverse=True)[:24]
    return tuple(sid for ids in fullest for sid in ids) + tuple(f"LONE-{n}" for n in range(20))


def values(draw: st.DrawFn, count: int) -> list[bytes]:
    return [draw(st.binary(min_size=32, max_size=32)) for _ in range(count)]


@st.composite
def maps(draw: st.DrawFn) -> dict[str, bytes]:
    ids = draw(st.lists(st.sampled_from(crowded_ids()), max_size=80, unique=True))
    return dict(zip(ids, values(draw, len(ids)), strict=True))


def check_tiers(status_map: StatusMap, entries: dict[str, bytes]) -> MapTop:
    """Every tier of ``status_map`` against ``entries`` (what it should hold) by hand."""
    by_bucket: dict[int, list[tuple[bytes, bytes]]] = {}
    for sid, value in entries.items():
        by_bucket.setdefault(bucket_by_hand(sid), []).append((key_of(sid), value))
    root = node_by_hand(sorted(kv for kvs in by_bucket.values() for kv in kvs), 0)
    assert status_map.root() == root and len(status_map) == len(entries)
    top = MapTop.from_bytes(status_map.top_bytes())
    assert top.gives(root, len(entries)) and top.to_bytes() == status_map.top_bytes()
    for index in range(BUCKETS):
        pairs = sorted(by_bucket.get(index, []))
        raw = status_map.bucket_entries(index)
        assert raw == b"".join(k + v for k, v in pairs)
        expected = (len(pairs), node_by_hand(pairs, 16))
        assert bucket_node(raw, index) == expected == top.bucket(index)
        # A bucket of one entry is carried as that entry, which binds it to its bucket.
        item = (1, pairs[0][0] + pairs[0][1]) if len(pairs) == 1 else expected
        assert status_map.bucket_state(index) == item == top.item(index)
    for sid in crowded_ids():
        bucket = bucket_of(sid)
        assert bucket == bucket_by_hand(sid)
        found = entry_in(status_map.bucket_entries(bucket), key_of(sid))
        assert found == entries.get(sid)
        verify_map_proof(root, sid, found, status_map.prove(sid))
    return top


@settings(max_examples=25, deadline=None)
@given(maps())
def test_the_top_and_each_bucket_give_the_map_and_its_proofs(entries: dict[str, bytes]) -> None:
    check_tiers(StatusMap(entries.items()), entries)


@st.composite
def steps(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, bytes | None]]:
    """A map, and what changes: an id to its new value, None to remove it."""
    start = draw(maps())
    touched = draw(st.lists(st.sampled_from(crowded_ids()), min_size=1, max_size=20, unique=True))
    changes: dict[str, bytes | None] = {}
    for sid in touched:
        remove = sid in start and draw(st.booleans())
        changes[sid] = None if remove else draw(st.binary(min_size=32, max_size=32))
    return start, changes


@settings(max_examples=25, deadline=None)
@given(steps())
def test_a_diff_of_the_changed_buckets_moves_the_old_top_to_the_new_root(
    step: tuple[dict[str, bytes], dict[str, bytes | None]],
) -> None:
    start, changes = step
    status_map = StatusMap(start.items())
    old_top = MapTop.from_bytes(status_map.top_bytes())
    entries = dict(start)
    for sid, value in changes.items():
        if value is None:
            status_map.remove(sid)
            del entries[sid]
        else:
            status_map.set(sid, value)
            entries[sid] = value
    new_top = check_tiers(status_map, entries)
    buckets = {bucket_of(sid) for sid in changes}
    diff = {index: status_map.bucket_state(index) for index in buckets}
    encoded = diff_bytes(diff)
    assert parse_diff(encoded) == diff
    moved = old_top.with_buckets(parse_diff(encoded))
    assert moved.gives(status_map.root(), len(status_map))
    assert moved.to_bytes() == new_top.to_bytes()
    # A diff that leaves out a bucket that changed, or names a wrong node or count, does not.
    changed = [i for i in sorted(buckets) if old_top.item(i) != diff[i]]
    for index in changed:
        missing = {i: state for i, state in diff.items() if i != index}
        assert _refused(old_top, missing, status_map)
    for index in sorted(buckets):
        count, node = diff[index]
        wrong_node = bytes([node[0] ^ 1]) + node[1:]
        for wrong in ((count, wrong_node), (count + 1, node)):
            forged = {**diff, index: wrong}
            assert _refused(old_top, forged, status_map)


def _refused(top: MapTop, diff: dict[int, tuple[int, bytes]], status_map: StatusMap) -> bool:
    """Whether ``diff`` cannot move ``top`` to ``status_map``'s root: refused as malformed (an
    empty bucket's count with another node), or giving another root or count."""
    try:
        moved = top.with_buckets(diff)
    except ValueError:
        return True
    return not moved.gives(status_map.root(), len(status_map))


# --- bytes that are not what they claim ---------------------------------------------------------


def test_malformed_tiers_raise_value_error_naming_what() -> None:
    some = [*crowded_ids()[:30], "LONE-0"]  # crowded buckets, and one of a single entry
    entries = {sid: hashlib.sha256(sid.encode()).digest() for sid in some}
    status_map = StatusMap(entries.items())
    top = status_map.top_bytes()
    with pytest.raises(ValueError, match="bucket 65535: cut short"):
        MapTop.from_bytes(top[:-1])
    with pytest.raises(ValueError, match="a map top has 65536 buckets, not 65535"):
        MapTop([status_map.bucket_state(i) for i in range(BUCKETS - 1)])
    items = [status_map.bucket_state(i) for i in range(BUCKETS)]
    empty = next(i for i in range(BUCKETS) if items[i][0] == 0)
    with pytest.raises(ValueError, match=f"bucket {empty}: count 0 with node 01"):
        MapTop([*items[:empty], (0, b"\x01" + bytes(31)), *items[empty + 1 :]])
    lone = next(i for i in range(BUCKETS) if items[i][0] == 1)
    moved = [*items]
    moved[lone], moved[lone ^ 1] = items[lone ^ 1], items[lone]
    with pytest.raises(ValueError, match="its one entry is not an entry of this bucket"):
        MapTop(moved)  # the same root, were a lone entry carried by its node alone
    with pytest.raises(ValueError, match="its one entry is not an entry of this bucket"):
        parse_diff(diff_bytes({lone ^ 1: items[lone]}))
    full = bucket_of(crowded_ids()[0])
    raw = status_map.bucket_entries(full)
    assert len(raw) >= 128
    with pytest.raises(ValueError, match=f"bucket {full}: {len(raw) - 1} bytes is not a list"):
        bucket_node(raw[:-1], full)
    swapped = raw[64:128] + raw[:64] + raw[128:]
    with pytest.raises(ValueError, match=f"bucket {full}: keys are not in ascending order"):
        bucket_node(swapped, full)
    with pytest.raises(ValueError, match=f"bucket {full}: keys are not in ascending order"):
        bucket_node(raw[:64] + raw, full)  # a key twice
    with pytest.raises(ValueError, match=f"bucket {full + 1}: holds a key of bucket {full}"):
        bucket_node(raw, full + 1)
    with pytest.raises(ValueError, match="bucket 0: cut short"):
        parse_diff(bytes(37))
    with pytest.raises(ValueError, match="too short to begin with a serial"):
        serial_of(bytes(7))
    assert serial_of(serial_bytes(7) + b"rest") == (7, b"rest")
