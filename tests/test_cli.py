"""The ``permitgate registry`` command line: where the database and keys come from, the
checkpoint and demo-data commands, and clear errors before ``init`` or with the wrong key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from registry_support import (
    EXAMPLE_LINES,
    ORIGIN,
    S1,
    Registry,
    another_registry,
    export_records,
    invoke,
    jsonl,
    key_name,
    open_checkpoint,
    open_envelope,
    parse_verifier_key,
    structure,
)

NO_REGISTRY = "permitgate: no registry here: run 'permitgate registry init' first\n"


def test_database_and_keys_from_the_environment(blank_registry: Registry) -> None:
    reg = blank_registry
    env = {"PERMITGATE_DB": reg.url, "PERMITGATE_KEYS": str(reg.keys)}
    assert invoke(["registry", "init"], **env).exit_code == 0
    assert (reg.keys / "registry.key").exists()
    result = invoke(["registry", "import", "-"], input=jsonl(EXAMPLE_LINES), **env)
    assert result.exit_code == 0, result.output
    # The same registry, read with --db.
    assert reg.export() == jsonl(EXAMPLE_LINES).encode()
    assert invoke(["registry", "export"], **env).stdout_bytes == reg.export()
    assert invoke(["registry", "checkpoint"], **env).stdout_bytes == reg.checkpoint()
    shown = invoke(["registry", "status", S1], **env)
    assert shown.stdout_bytes == reg.cli("status", S1, keys=True).stdout_bytes
    assert shown.stdout.startswith("signature: verified: signed by the registry key ")
    assert invoke(["registry", "verify"], **env).exit_code == 0


def test_db_option_wins_over_the_environment(reg: Registry, tmp_path: Path) -> None:
    reg.load(EXAMPLE_LINES)
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    result = invoke(["registry", "export", "--db", reg.url], PERMITGATE_DB=elsewhere)
    assert result.stdout_bytes == jsonl(EXAMPLE_LINES).encode()
    assert not (tmp_path / "elsewhere.db").exists()


def test_defaults_are_a_sqlite_file_and_keys_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    unset: dict[str, str | None] = {"PERMITGATE_DB": None, "PERMITGATE_KEYS": None}
    result = invoke(["registry", "init"], **unset)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "permitgate.db").is_file()
    assert (tmp_path / ".permitgate" / "keys" / "registry.key").is_file()
    assert invoke(["registry", "import", "-"], input=jsonl(EXAMPLE_LINES), **unset).exit_code == 0
    assert invoke(["registry", "export"], **unset).stdout_bytes == jsonl(EXAMPLE_LINES).encode()
    assert invoke(["registry", "verify"], **unset).exit_code == 0


def test_checkpoint_prints_the_latest_signed_note(reg: Registry) -> None:
    key = parse_verifier_key(reg.public_key_text)
    assert open_checkpoint(reg.checkpoint(), key).size == 0
    reg.load(EXAMPLE_LINES)
    reg.load([structure("S-2")])
    note = reg.checkpoint()
    [(stored, cosignature)] = reg.sql(
        "SELECT note, cosignature FROM head ORDER BY serial DESC LIMIT 1"
    )
    assert note == bytes(stored) + bytes(cosignature)
    checkpoint = open_checkpoint(note, key)
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 4)
    assert note.decode().splitlines()[:2] == [ORIGIN, "4"]


def test_demo_data_imports_cleanly_and_verifies(reg: Registry) -> None:
    result = invoke(["registry", "demo-data", "--structures", "30"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout_bytes.splitlines()]
    assert sum(r["type"] == "structure" for r in records) == 30

    imported = reg.cli("import", "-", input=result.stdout_bytes, keys=True)
    assert imported.exit_code == 0, imported.output
    assert imported.stdout == (
        f"{len(records)} lines: {len(records)} changes, 0 unchanged; "
        f"registry version {len(records)}; 30 status records signed\n"
    )
    verified = reg.verify()
    assert verified.exit_code == 0, verified.output
    assert verified.stdout == (
        f"ok: {len(records)} events match the signed checkpoint; "
        "30 structures match their signed status records\n"
    )
    exported = list(export_records(reg.export()))
    assert sorted(json.dumps(r, sort_keys=True) for r in exported) == sorted(
        json.dumps(r, sort_keys=True) for r in records
    )
    key = parse_verifier_key(reg.public_key_text)
    for r in records:
        if r["type"] == "structure":
            payload = open_envelope(reg.status_envelope(r["id"]), key)
            assert payload["structure"] == r


def test_demo_data_rejects_a_bad_count() -> None:
    result = invoke(["registry", "demo-data", "--structures", "0"])
    assert result.exit_code == 2
    assert "--structures" in result.stderr


def test_commands_before_init_say_so(blank_registry: Registry) -> None:
    reg = blank_registry
    # Keys exist (made for another registry), but this database was never initialised.
    setup = invoke(
        ["registry", "init", "--db", f"sqlite:///{reg.scratch / 'x.db'}", "--keys", str(reg.keys)]
    )
    assert setup.exit_code == 0, setup.output

    # A SQLite file that does not exist is never created by these; a PostgreSQL database that
    # exists but holds no registry says so.
    said = (
        f"permitgate: no registry at {reg.scratch / 'registry.db'}: the file does not exist "
        "(check --db, or create one with 'permitgate registry init')\n"
        if reg.url.startswith("sqlite")
        else NO_REGISTRY
    )
    result = reg.import_text(jsonl(EXAMPLE_LINES))
    assert (result.exit_code, result.stderr) == (2, said)
    commands = (["checkpoint"], ["export"], ["status", S1], ["notifications"], ["refresh"])
    for command in commands:
        result = reg.cli(*command, keys=command == ["refresh"])
        assert (result.exit_code, result.stdout, result.stderr) == (2, "", said), command
    result = reg.verify()
    if reg.url.startswith("sqlite"):
        assert (result.exit_code, result.stderr) == (2, said)
        assert not (reg.scratch / "registry.db").exists()
    else:
        assert result.exit_code == 1
        assert result.stderr.splitlines()[0] == "registry: not initialised"


def test_import_with_a_key_that_is_not_the_registrys(reg: Registry, tmp_path: Path) -> None:
    reg.load(EXAMPLE_LINES)
    before = reg.snapshot()
    other = another_registry(tmp_path)
    result = invoke(
        ["registry", "import", "-", "--db", reg.url, "--keys", str(other)],
        input=jsonl([structure("S-2")]),
    )
    assert result.exit_code == 2
    other_key = (other / "registry.pub").read_text().strip()
    wanted = key_name(reg.public_key_text)
    assert result.stderr == (
        f"permitgate: this registry was made with the key {wanted}, but {other} holds "
        f"{key_name(other_key)}: pass --keys the folder that holds {wanted}\n"
    )
    assert reg.snapshot() == before
    assert reg.verify().exit_code == 0


def test_import_without_keys(reg: Registry, tmp_path: Path) -> None:
    result = invoke(
        ["registry", "import", "-", "--db", reg.url, "--keys", str(tmp_path / "none")],
        input=jsonl(EXAMPLE_LINES),
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"permitgate: this registry was made with the key {key_name(reg.public_key_text)}, "
        f"but {tmp_path / 'none' / 'registry.key'} does not exist: pass --keys the folder "
        f"that holds that key (its registry.pub reads {reg.public_key_text.strip()})\n"
    )


def test_the_installed_console_script(reg: Registry) -> None:
    # The real entry point, as a user runs it: a pipe into `import -`, exit codes, streams.
    script = str(Path(sys.executable).with_name("permitgate"))
    options = ["--db", reg.url, "--keys", str(reg.keys)]
    done = subprocess.run(
        [script, "registry", "import", "-", *options],
        input=jsonl(EXAMPLE_LINES).encode(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    bad = subprocess.run(
        [script, "registry", "import", "-", *options],
        input=b"[]\n",
        capture_output=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stdout == b""
    assert bad.stderr.decode().splitlines() == [
        "line 1: (line): not a JSON object",
        "permitgate: 1 error in 1 line; nothing was imported",
    ]
    assert reg.export() == jsonl(EXAMPLE_LINES).encode()
