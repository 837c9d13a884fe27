"""``permitgate registry department ...``: keygen, enrol, rotate, revoke, list; the directory
in the registry's own state and in the log's department events, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from registry_support import Registry, invoke, structure

from registry.admin import STATE_NAME
from registry.log import decode_event
from registry.trusted_state import TrustedState


@pytest.fixture
def registry(reg: Registry) -> Registry:
    reg.load([structure("110228-0001-0001")])
    return reg


def department(reg: Registry, *args: str) -> tuple[int, str]:
    result = reg.cli("department", *args, keys=True)
    return result.exit_code, result.output


def test_enrol_rotate_revoke_and_list(registry: Registry) -> None:
    out = registry.scratch / "department-keys"
    made = invoke(["registry", "department", "keygen", "--id", "city-land", "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert (out / "city-land.key").stat().st_mode & 0o777 == 0o600
    pub = out / "city-land.pub"
    code, said = department(
        registry,
        "enrol",
        "--id",
        "city-land",
        "--role",
        "land",
        "--name",
        "Land Bureau",
        "--key",
        str(pub),
    )
    assert code == 0 and "enrolled city-land (land, Land Bureau)" in said, said
    code, said = department(registry, "list")
    key_id = pub.read_text().strip().split("+")[1]
    assert code == 0 and "city-land" in said and key_id in said and "active" in said, said
    # Enrolled twice: refused, nothing written.
    events = registry.scalar("SELECT count(*) FROM event")
    code, said = department(
        registry, "enrol", "--id", "city-land", "--role", "land", "--name", "x", "--key", str(pub)
    )
    assert code == 2 and "enrolled already" in said, said
    assert registry.scalar("SELECT count(*) FROM event") == events
    # A key named for another department is refused.
    other = invoke(["registry", "department", "keygen", "--id", "city-other", "--out", str(out)])
    assert other.exit_code == 0
    code, said = department(
        registry, "rotate", "--id", "city-land", "--key", str(out / "city-other.pub")
    )
    assert code == 2 and "named 'city-other', not 'city-land'" in said, said
    # Rotate to a new key, then revoke it.
    shutil.move(out / "city-land.pub", out / "old.pub")
    (out / "city-land.key").unlink()
    assert (
        invoke(
            ["registry", "department", "keygen", "--id", "city-land", "--out", str(out)]
        ).exit_code
        == 0
    )
    code, said = department(registry, "rotate", "--id", "city-land", "--key", str(pub))
    assert code == 0, said
    code, said = department(registry, "revoke", "--id", "city-land", "--reason", "lost laptop")
    assert code == 0 and "revoked" in said, said
    code, said = department(registry, "list")
    assert "revoked" in said
    # The log holds the three changes, in order, with the keys.
    changes = [
        decode_event(bytes(body)).department
        for (body,) in registry.sql("SELECT body FROM event WHERE structure_id = '' ORDER BY seq")
    ]
    assert [c.change for c in changes if c is not None] == ["enrol", "rotate", "revoke"]
    assert changes[-1] is not None and changes[-1].reason == "lost laptop"
    verified = registry.verify()
    assert verified.exit_code == 0, verified.output


def test_the_directory_is_rebuilt_from_the_signed_log(registry: Registry) -> None:
    """A state directory that is lost is rebuilt from the database after the full check, with
    the departments its log enrolled; a row written into no log is not among them."""
    out = registry.scratch / "department-keys"
    assert (
        invoke(
            ["registry", "department", "keygen", "--id", "city-land", "--out", str(out)]
        ).exit_code
        == 0
    )
    code, said = department(
        registry,
        "enrol",
        "--id",
        "city-land",
        "--role",
        "land",
        "--name",
        "Land",
        "--key",
        str(out / "city-land.pub"),
    )
    assert code == 0, said
    shutil.rmtree(registry.state_dir)
    code, said = department(registry, "list")
    assert code == 0 and "city-land" in said, said
    state = TrustedState(registry.state_dir, STATE_NAME)
    try:
        assert [row[0] for row in state.departments()] == ["city-land"]
    finally:
        state.close()


def test_another_writers_enrolment_is_adopted(registry: Registry, tmp_path: Path) -> None:
    """A second state directory (another writer of this registry) enrols a department; the
    first adopts the head, and with it the department, when it next writes."""
    out = registry.scratch / "department-keys"
    assert (
        invoke(
            ["registry", "department", "keygen", "--id", "city-land", "--out", str(out)]
        ).exit_code
        == 0
    )
    other_state = tmp_path / "other-state"
    shutil.copytree(registry.state_dir, other_state)
    result = invoke(
        [
            "registry",
            "department",
            "enrol",
            "--id",
            "city-land",
            "--role",
            "land",
            "--name",
            "Land",
            "--key",
            str(out / "city-land.pub"),
            "--db",
            registry.url,
            "--keys",
            str(registry.keys),
            "--state",
            str(other_state),
        ]
    )
    assert result.exit_code == 0, result.output
    code, said = department(registry, "list")
    assert code == 0 and "city-land" in said, said
