"""Departments' writes through the registry service, over mutual TLS on loopback, on SQLite
and PostgreSQL: every remit rule, bad input per field, idempotency, Art. 19, and the time a
write takes to reach the status record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from department_support import S1, S2, World, make_world


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = make_world(db_url, tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()
        world.registry.close() if hasattr(world.registry, "close") else None


def test_open_case_in_remit(world: World) -> None:
    result = world.write(
        "city-enforcement",
        "open_case",
        {
            "case": {
                "id": "C-2",
                "structure": S2,
                "kind": "no_planning_permit",
                "stage": "filed",
                "source": "patrol",
                "opened": "2026-11-30T01:00:00Z",
            }
        },
    )
    assert result.case.id == "C-2" and result.case.stage == "filed"
    assert not result.replayed
    assert S1
