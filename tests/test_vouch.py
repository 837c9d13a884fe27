"""``registry vouch``: the registry's signed statements for gate keys, stored, renewed, retired,
listed and refused; and the gate's side (``GateKeyVouch``), which adopts only a statement that
verifies. Statements are checked by hand (DSSE and Ed25519 from the specifications, with
``cryptography``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client import BadSignatureError, VerifierKey
from permitgate_client.formats import GATE_KEY_PAYLOAD_TYPE, GateKeyStatement, parse_time
from registry_support import PublicKey, Registry, pae, parse_verifier_key

from registry.canonical import canonical_json
from registry.signing import Signer, ensure_signer, load_signer
from registry.storage import Database
from registry.vouch import StatementUnreadable, stored_statement, vouch_gate_key
from server.receipts import GateKeyVouch

GATE_KEY_TYPE = "application/vnd.permitgate.gate-key+json"


def open_statement(envelope: bytes, key: PublicKey) -> dict[str, Any]:
    """A gate key statement verified by hand: DSSE, PAE, Ed25519; its payload."""
    obj = json.loads(envelope)
    assert obj["payloadType"] == GATE_KEY_TYPE
    payload = base64.b64decode(obj["payload"], validate=True)
    [signature] = obj["signatures"]
    assert signature["keyid"] == f"{key.name}+{key.key_id.hex()}"
    key.key.verify(base64.b64decode(signature["sig"]), pae(GATE_KEY_TYPE, payload))
    decoded: dict[str, Any] = json.loads(payload)
    assert json.dumps(decoded, sort_keys=True, separators=(",", ":")).encode() == payload
    return decoded


def gate_pub(directory: Path, name: str = "gate.example/g1") -> tuple[Path, VerifierKey]:
    signer, _ = ensure_signer(directory, "gate", name)
    return directory / "gate.pub", signer.verifier


def _utc(value: Any) -> datetime:
    """A stored time: PostgreSQL gives it aware, SQLite as naive UTC text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def rows(reg: Registry) -> list[tuple[str, bytes, datetime]]:
    return [
        (str(k), bytes(s), _utc(n))
        for k, s, n in reg.sql("SELECT key_id, statement, not_after FROM gate_key ORDER BY key_id")
    ]


def _near(text: str, at: datetime, slack: float = 5.0) -> bool:
    return abs((parse_time(text) - at).total_seconds()) <= slack


def test_vouch_signs_and_stores_a_statement(reg: Registry, tmp_path: Path) -> None:
    pub, gate_key = gate_pub(tmp_path / "gate")
    result = reg.cli("vouch", str(pub), "--days", "10", keys=True)
    assert result.exit_code == 0, result.output
    assert f"gate key {gate_key.keyid_text} vouched for from " in result.stdout
    [(key_id, envelope, _)] = rows(reg)
    assert key_id == gate_key.keyid_text
    payload = open_statement(envelope, parse_verifier_key(reg.public_key_text))
    assert set(payload) == {"gate_key", "not_before", "not_after"}
    assert payload["gate_key"] == pub.read_text().strip()
    now = datetime.now(UTC)
    assert _near(payload["not_before"], now)
    assert parse_time(payload["not_after"]) - parse_time(payload["not_before"]) == timedelta(
        days=10
    )
    listed = reg.cli("vouch", "--list", keys=True)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == (
        f"{key_id}  from {payload['not_before']} until {payload['not_after']}\n"
    )


def test_vouching_again_renews_in_place(reg: Registry, tmp_path: Path) -> None:
    pub, _ = gate_pub(tmp_path / "gate")
    other, _ = gate_pub(tmp_path / "other", "gate.example/g2")
    for args in ((str(pub), "--days", "1"), (str(other),), (str(pub), "--days", "90")):
        assert reg.cli("vouch", *args, keys=True).exit_code == 0
    stored = rows(reg)
    assert [k.split("+")[0] for k, _, _ in stored] == ["gate.example/g1", "gate.example/g2"]
    key = parse_verifier_key(reg.public_key_text)
    first = open_statement(stored[0][1], key)
    assert parse_time(first["not_after"]) - parse_time(first["not_before"]) == timedelta(days=90)
    assert stored[0][2] == parse_time(first["not_after"])


def test_retire_ends_the_validity_now(reg: Registry, tmp_path: Path) -> None:
    pub, gate_key = gate_pub(tmp_path / "gate")
    assert reg.cli("vouch", str(pub), keys=True).exit_code == 0
    key = parse_verifier_key(reg.public_key_text)
    before = open_statement(rows(reg)[0][1], key)
    hex_id = gate_key.keyid_text.rsplit("+", 1)[1]
    result = reg.cli("vouch", "--retire", hex_id, keys=True)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"gate key {gate_key.keyid_text} retired: vouched for until ")
    [(_, envelope, not_after)] = rows(reg)
    after = open_statement(envelope, key)
    assert after["not_before"] == before["not_before"]  # receipts decided before still verify
    assert after["gate_key"] == before["gate_key"]
    assert parse_time(after["not_after"]) > parse_time(after["not_before"])
    assert _near(after["not_after"], datetime.now(UTC)) and not_after == parse_time(
        after["not_after"]
    )
    again = reg.cli("vouch", "--retire", gate_key.keyid_text, keys=True)
    assert again.exit_code == 2
    assert "is no longer vouched for since" in again.stderr and "nothing to retire" in again.stderr


def test_retire_refuses_what_it_cannot_find_or_verify(reg: Registry, tmp_path: Path) -> None:
    pub, gate_key = gate_pub(tmp_path / "gate")
    unknown = reg.cli("vouch", "--retire", "deadbeef", keys=True)
    assert unknown.exit_code == 2
    assert unknown.stderr == (
        "permitgate: no gate key 'deadbeef' is vouched for here (known: none)\n"
    )
    assert reg.cli("vouch", str(pub), keys=True).exit_code == 0
    stored = rows(reg)
    # Someone with the database but not the key moves the end of the statement.
    obj = json.loads(stored[0][1])
    payload = json.loads(base64.b64decode(obj["payload"]))
    payload["not_before"] = "2020-01-01T00:00:00Z"
    obj["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    reg.sql(
        "UPDATE gate_key SET statement = :s WHERE key_id = :k",
        s=json.dumps(obj).encode(),
        k=gate_key.keyid_text,
    )
    result = reg.cli("vouch", "--retire", gate_key.keyid_text, keys=True)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"permitgate: gate_key row {gate_key.keyid_text!r}: its statement does not verify with "
        "the registry key ("
    )
    assert rows(reg)[0][1] == json.dumps(obj).encode()  # nothing was written
    listed = reg.cli("vouch", "--list", keys=True)
    assert listed.stdout.startswith(f"{gate_key.keyid_text}  NOT VERIFIED: gate_key row ")
    # Another key's genuine statement filed under this key's id.
    other, _ = gate_pub(tmp_path / "other", "gate.example/g2")
    assert reg.cli("vouch", str(other), keys=True).exit_code == 0
    reg.sql(
        "UPDATE gate_key SET statement = (SELECT statement FROM gate_key WHERE key_id <> :k) "
        "WHERE key_id = :k",
        k=gate_key.keyid_text,
    )
    swapped = reg.cli("vouch", "--retire", gate_key.keyid_text, keys=True)
    assert swapped.exit_code == 2
    assert "holds the statement of gate.example/g2+" in swapped.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "give one of GATE_PUB, --retire KEYID or --list"),
        (["--list", "--retire", "x"], "give one of GATE_PUB, --retire KEYID or --list"),
        (["--days", "0", "PUB"], "0 is not in the range 1<=x<=3660"),
    ],
)
def test_vouch_usage(reg: Registry, tmp_path: Path, args: list[str], says: str) -> None:
    pub, _ = gate_pub(tmp_path / "gate")
    result = reg.cli("vouch", *[str(pub) if a == "PUB" else a for a in args], keys=True)
    assert result.exit_code == 2
    assert says in result.stderr
    assert rows(reg) == []


def test_vouch_refuses_the_registry_key_and_bad_files(reg: Registry, tmp_path: Path) -> None:
    result = reg.cli("vouch", str(reg.keys / "registry.pub"), keys=True)
    assert result.exit_code == 2
    assert result.stderr == (
        "permitgate: that is the registry's own key: a gate signs receipts with a key of its "
        "own (its gate.pub)\n"
    )
    bad = tmp_path / "bad.pub"
    bad.write_text("gate.example/g1+00000000+AAAA\n")
    result = reg.cli("vouch", str(bad), keys=True)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"permitgate: {bad}: not a verifier key file (")
    assert rows(reg) == []


def test_vouch_needs_the_registry_key(reg: Registry, tmp_path: Path) -> None:
    pub, _ = gate_pub(tmp_path / "gate")
    elsewhere = tmp_path / "elsewhere"
    result = reg.cli("vouch", str(pub), "--keys", str(elsewhere))
    assert result.exit_code == 2
    assert "this registry was made with the key" in result.stderr
    assert rows(reg) == []


# --- the gate's side -----------------------------------------------------------------------------


class Reads:
    """What ``GateKeyVouch`` reads, scripted: each read takes the next value."""

    def __init__(self, *values: bytes | Exception | None) -> None:
        self.values = list(values)
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self) -> bytes | None:
        with self.lock:
            self.count += 1
            value = self.values[min(self.count, len(self.values)) - 1]
        if isinstance(value, Exception):
            raise value
        return value


def _statement(registry: Signer, gate: VerifierKey, start: datetime, days: float = 30) -> bytes:
    statement = GateKeyStatement(gate, start, start + timedelta(days=days))
    return registry.sign_envelope(canonical_json(statement.to_json()), GATE_KEY_PAYLOAD_TYPE)


def _signer(name: str) -> Signer:
    return Signer(name, Ed25519PrivateKey.generate())


def test_the_gate_adopts_only_a_statement_that_verifies(caplog: pytest.LogCaptureFixture) -> None:
    registry, gate, stranger = (
        _signer("r.example/registry"),
        _signer("g.example/gate"),
        _signer("r.example/registry"),
    )
    now = datetime.now(UTC).replace(microsecond=0)
    good = _statement(registry, gate.verifier, now - timedelta(days=1))
    renewed = _statement(registry, gate.verifier, now - timedelta(hours=1))
    reads = Reads(
        None,  # not vouched yet
        good,
        _statement(stranger, gate.verifier, now),  # forged: another key under the name
        None,  # row deleted
        StatementUnreadable("database is locked"),  # the database cannot be read
        _statement(registry, registry.verifier, now),  # vouches for the registry key
        _statement(registry, stranger.verifier, now),  # another gate's statement
        renewed,
    )
    vouch = GateKeyVouch(
        reads, registry_key=registry.verifier, gate_key=gate.verifier, interval=3600
    )
    assert vouch.loaded.wait(10) and reads.count == 1
    assert vouch.statement is None and vouch.current(now) is None
    assert "holds no statement vouching for it" in caplog.text
    vouch.load()
    assert vouch.current(now) == json.loads(good)
    assert vouch.current(now - timedelta(days=2)) is None  # before it holds
    assert vouch.current(now + timedelta(days=29)) is None  # after it ends
    for _ in range(5):  # forged, missing, unreadable, the registry's key, another gate's: kept
        vouch.load()
        assert vouch.current(now) == json.loads(good)
    assert "does not verify" in caplog.text and "vouches for r.example/registry+" in caplog.text
    assert "cannot read the registry's statement vouching for it (database is locked)" in (
        caplog.text
    )
    vouch.load()
    assert vouch.current(now) == json.loads(renewed)
    assert reads.count == 8


def test_the_gate_never_goes_back_to_an_older_statement(caplog: pytest.LogCaptureFixture) -> None:
    """Someone who writes the database puts back the statement a retirement shortened, or an
    older one: the gate keeps the newer it holds; a retirement and a renewal are taken."""
    registry, gate = _signer("r.example/registry"), _signer("g.example/gate")
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=1)
    first = _statement(registry, gate.verifier, start)
    retired = _statement(registry, gate.verifier, start, days=1.5)  # same start, ends sooner
    renewed = _statement(registry, gate.verifier, now)
    reads = Reads(first, retired, first, renewed, retired)
    vouch = GateKeyVouch(
        reads, registry_key=registry.verifier, gate_key=gate.verifier, interval=3600
    )
    assert vouch.loaded.wait(10)
    assert vouch.current(now) == json.loads(first)
    vouch.load()
    assert vouch.current(now) == json.loads(retired)  # the retirement is taken
    vouch.load()
    assert vouch.current(now) == json.loads(retired)  # the longer one put back: refused
    assert "undoes a retirement" in caplog.text
    vouch.load()
    assert vouch.current(now) == json.loads(renewed)  # a renewal is taken
    vouch.load()
    assert vouch.current(now) == json.loads(renewed)  # an older one put back: refused


def test_the_gate_reads_again_after_its_interval() -> None:
    registry, gate = _signer("r.example/registry"), _signer("g.example/gate")
    now = datetime.now(UTC)
    first = _statement(registry, gate.verifier, now - timedelta(days=1))
    second = _statement(registry, gate.verifier, now - timedelta(hours=1))
    reads = Reads(first, second)
    vouch = GateKeyVouch(reads, registry_key=registry.verifier, gate_key=gate.verifier, interval=0)
    assert vouch.loaded.wait(10)
    assert vouch.current(now) in (json.loads(first), json.loads(second))  # starts a read

    wanted: dict[str, Any] = json.loads(second)

    def renewed() -> bool:
        return vouch.current(now) == wanted

    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not renewed():
        assert datetime.now(UTC) < deadline, "the statement was not read again"
    assert reads.count >= 2


def test_stored_statement_reads_and_verifies(db_url: str, tmp_path: Path) -> None:
    reg = Registry(db_url, tmp_path / "keys", tmp_path)
    try:
        reg.init()
        db = Database(db_url, create=False)
        signer = load_signer(reg.keys, "registry")
        _, gate_key = gate_pub(tmp_path / "gate")
        assert stored_statement(db, gate_key, signer.verifier) is None
        statement = vouch_gate_key(db, signer, gate_key, days=3)
        envelope = stored_statement(db, gate_key, signer.verifier)
        assert envelope is not None
        assert open_statement(envelope, parse_verifier_key(reg.public_key_text)) == (
            statement.to_json()
        )
        with pytest.raises(BadSignatureError):
            stored_statement(db, gate_key, _signer(signer.name).verifier)
        db.dispose()
    finally:
        reg.close()


def test_vouch_on_a_registry_from_before_gate_keys(reg: Registry, tmp_path: Path) -> None:
    pub, _ = gate_pub(tmp_path / "gate")
    reg.sql("DROP TABLE gate_key")
    result = reg.cli("vouch", str(pub), keys=True)
    assert result.exit_code == 2
    assert "has no gate_key table yet: run 'permitgate registry init'" in result.stderr
