"""The SQL feed's reads for a gate that holds only the status map's top, on both backends:
a bucket's records, the top computed from every record, the stored log frontier; and the
``map_bucket`` column that migration 0006 adds and fills for records written before it.

Checked by an independent path: buckets from SHA-256 of the ids here, the map root against
the head's signed map line, the frontier's root against the signed log root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from gate_helpers import GateRegistry, case, urban_ok
from permitgate_client._proofs import RegistryHead, map_key, verify_registry_head

import registry
from registry.feed import FeedError, SqlFeed
from registry.merkle import CompactTree
from registry.signing import load_verifier
from registry.statusmap import MapTop, bucket_node, entry_in
from registry.storage import Database

IDS = [f"S-{n:04d}" for n in range(60)]


def _bucket(structure_id: str) -> int:
    return int.from_bytes(hashlib.sha256(structure_id.encode()).digest()[:2], "big")


@pytest.fixture
def loaded(db_url: str, keys_dir: Path) -> GateRegistry:
    reg = GateRegistry(db_url, keys_dir)
    reg.load([line for sid in IDS for line in urban_ok(sid)])
    reg.load([case("C-1", IDS[7], "stop_order")])
    return reg


def _head(reg: GateRegistry) -> RegistryHead:
    return verify_registry_head(reg.checkpoint_note(), load_verifier(reg.keys_dir, "registry"))


def test_bucket_records_are_the_records_of_that_bucket(loaded: GateRegistry) -> None:
    with SqlFeed(loaded.db).snapshot() as view:
        for sid in IDS[:10]:
            got = dict(view.bucket_records(_bucket(sid)))
            assert got[sid] == loaded.status_envelope(sid)
            assert all(_bucket(other) == _bucket(sid) for other in got)


def test_map_top_gives_the_signed_root_and_proves_each_bucket(loaded: GateRegistry) -> None:
    head = _head(loaded)
    with SqlFeed(loaded.db).snapshot() as view:
        top = MapTop.from_bytes(view.map_top())
        assert top.gives(head.map.root, head.map.count)
        sid = IDS[7]
        index = _bucket(sid)
        rows = view.bucket_records(index)
    entries = b"".join(sorted(map_key(s) + hashlib.sha256(e).digest() for s, e in rows))
    assert bucket_node(entries, index) == top.bucket(index)
    assert entry_in(entries, map_key(sid)) == hashlib.sha256(loaded.status_envelope(sid)).digest()


def test_frontier_gives_the_signed_log_root(loaded: GateRegistry) -> None:
    head = _head(loaded)
    with SqlFeed(loaded.db).snapshot() as view:
        state = view.frontier(head.size)
        assert view.frontier(head.size + 1000) is None
    assert state is not None
    assert CompactTree.from_state(head.size, state).root() == head.checkpoint.root_hash


def test_a_record_filed_under_another_bucket_fails_the_top(loaded: GateRegistry) -> None:
    sid = IDS[3]
    wrong = (_bucket(sid) + 1) % 65536
    loaded.sql("UPDATE status_record SET map_bucket = :b WHERE structure_id = :s", b=wrong, s=sid)
    with SqlFeed(loaded.db).snapshot() as view:
        assert sid not in dict(view.bucket_records(_bucket(sid)))
        with pytest.raises(FeedError, match=f"status map: bucket {wrong}: holds a key of bucket"):
            view.map_top()


def _config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(registry.__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    return config


def test_migration_0006_fills_the_bucket_of_existing_records(db_url: str) -> None:
    db = Database(db_url)
    try:
        with db.engine.begin() as connection:
            command.upgrade(_config(connection), "0005")
            for sid in IDS:
                connection.execute(
                    sa.text(
                        "INSERT INTO status_record (structure_id, tree_size, next_update, digest,"
                        " envelope) VALUES (:s, 1, :t, :d, :e)"
                    ),
                    {"s": sid, "t": "2030-01-01 00:00:00", "d": b"d", "e": b"e"},
                )
        db.upgrade()
        with db.engine.connect() as connection:
            result = connection.execute(
                sa.text("SELECT structure_id, map_bucket FROM status_record")
            )
            rows: dict[str, int] = {str(sid): int(bucket) for sid, bucket in result}
        assert rows == {sid: _bucket(sid) for sid in IDS}
        indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("status_record")}
        assert "ix_status_record_map_bucket" in indexes
    finally:
        db.dispose()
