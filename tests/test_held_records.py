"""``HeldRecords``: the verifier's records, a mapping each change copies only in part.

Checked against a plain dict given the same changes (any order of sets, replacements and
removals), and for what the verifier and the cache rely on: a mapping once made never changes,
whatever is made from it afterwards.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from server.cache import CachedStatus
from server.held_records import SHARDS, HeldRecords

IDS = st.sampled_from([f"110228-{n // 100:04d}-{n % 100:04d}" for n in range(300)])


def status(n: int) -> CachedStatus:
    envelope = b"record %d" % n
    return CachedStatus(envelope, n.to_bytes(32, "big", signed=True))


CHANGES = st.lists(
    st.tuples(
        st.dictionaries(IDS, st.integers(0, 10**6), max_size=20),
        st.lists(IDS, max_size=5),
    ),
    max_size=12,
)


def _same(held: HeldRecords, model: dict[str, CachedStatus]) -> None:
    assert len(held) == len(model)
    assert dict(held.items()) == model
    assert sorted(held) == sorted(model)
    assert sorted(held.keys()) == sorted(model)
    assert sorted(map(id, held.values())) == sorted(map(id, model.values()))
    for sid, value in model.items():
        assert held[sid] is value and held.get(sid) is value and sid in held
    assert held == model and model == held


@settings(max_examples=200, deadline=None)
@given(
    first=st.dictionaries(IDS, st.integers(0, 10**6), max_size=50),
    changes=CHANGES,
    absent=IDS,
)
def test_a_held_mapping_is_the_dict_given_the_same_changes(
    first: dict[str, int], changes: list[tuple[dict[str, int], list[str]]], absent: str
) -> None:
    model = {sid: status(n) for sid, n in first.items()}
    held = HeldRecords(model)
    made: list[tuple[HeldRecords, dict[str, CachedStatus]]] = [(held, dict(model))]
    for setting, removed in changes:
        statuses = {sid: status(n) for sid, n in setting.items()}
        held = held.changed(statuses, removed)
        model.update(statuses)
        for sid in removed:
            model.pop(sid, None)
        made.append((held, dict(model)))
    for mapping, expected in made:  # every mapping made before is as it was made
        _same(mapping, expected)
    if absent not in model:
        assert absent not in held and held.get(absent) is None
        assert held.get(absent, status(-1)).envelope == b"record -1"


def test_a_change_copies_only_the_shards_it_touches() -> None:
    """One record changed in 100,000: the new mapping shares every other shard with the old,
    and the old one still holds its record."""
    model = {f"110228-{n // 10000:04d}-{n % 10000:04d}": status(n) for n in range(100_000)}
    held = HeldRecords(model)
    sid = "110228-0004-0242"
    newer = held.changed({sid: status(-5)})
    shared = sum(a is b for a, b in zip(held._shards, newer._shards, strict=True))
    assert shared == SHARDS - 1
    assert held[sid] is model[sid] and newer[sid].envelope == b"record -5"
    assert len(newer) == len(held) == 100_000


def test_not_a_structure_id() -> None:
    held = HeldRecords({"110228-0000-0001": status(1)})
    others: list[object] = [1, None, b"110228-0000-0001"]
    assert not any(other in held for other in others)
