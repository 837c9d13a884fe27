"""Helpers for the gate's end-to-end tests: a real gate on loopback, a registry for it to serve,
wire-level request builders, and verifiers written apart from the code under test.

The gate runs on one asyncio loop in a background thread, shared by every gate test in the
process, so the tests stay plain synchronous functions that talk to it over real gRPC channels
(blocking stubs, ``GateClient``, the CLI) while the server, its follower and its decision log run
concurrently, as in production. No mocks anywhere: real sockets, real databases, real signatures.

The verifiers at the bottom use only ``hashlib``, ``base64``, ``json`` and ``cryptography``, from
the formats' specifications (C2SP signed-note, DSSE v1), never ``registry.trust``, so a bug in the
project's verifier cannot hide a bug in its signer.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import ipaddress
import json
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import grpc
import orjson
import registry_support
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from permitgate_client._proofs import RegistryHead, verify_registry_head
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc
from registry_support import structure as structure  # re-exported for the gate tests
from sqlalchemy import select

from registry.admin import default_state_dir, init_registry
from registry.heads import cosign_head, sign_head
from registry.importer import ImportReport, import_lines
from registry.merkle import CompactTree, leaf_hash
from registry.records import format_time
from registry.signing import Signer
from registry.statusmap import StatusMap
from registry.storage import Database, HeadRow
from server.app import GateApp, TlsFiles

T = TypeVar("T")

RECEIPT_TYPE = "application/vnd.permitgate.receipt+json"
STATUS_TYPE = "application/vnd.permitgate.status+json"
SERVICE = "permitgate.v1.PermitGate"


# --- the loop the gates run on -----------------------------------------------------------------


class LoopThread:
    """An asyncio event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gate-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result (a bounded wait: never hangs)."""
        return self.submit(coro).result(timeout)


_LOOP: LoopThread | None = None
_LOOP_LOCK = threading.Lock()


def gate_loop() -> LoopThread:
    """The process-wide loop every test gate runs on (created on first use)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = LoopThread()
        return _LOOP


# --- a running gate --------------------------------------------------------------------------


@dataclass
class RunningGate:
    """A ``GateApp`` started on loopback, on the shared loop."""

    app: GateApp
    loop: LoopThread
    stopped: bool = False

    @property
    def target(self) -> str:
        return self.app.address

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self.loop.run(coro, timeout)

    def stop(self, grace: float = 0.5) -> None:
        """Stop the gate (idempotent): health NOT_SERVING, server, follower, decision log."""
        if not self.stopped:
            self.stopped = True
            self.run(self.app.stop(grace))


def start_gate(
    db_url: str,
    keys_dir: Path,
    *,
    poll_interval: float = 0.2,
    max_staleness: float = 300.0,
    tls: TlsFiles | None = None,
    wait_first_poll: bool = True,
    **options: Any,
) -> RunningGate:
    """A gate on ``db_url``; by default, returned once its first look at the registry has
    ended (loaded or failed), so that tests see the data the registry already holds.

    Each gate gets a state directory of its own (a new one beside ``keys_dir``) unless
    ``state_dir`` is given: a test that restarts "the same" gate passes the same one.
    """
    loop = gate_loop()
    if options.get("state_dir") is None:
        options["state_dir"] = Path(tempfile.mkdtemp(prefix="gate-state-", dir=keys_dir.parent))

    async def create() -> GateApp:
        app = await GateApp.create(
            db_url=db_url,
            keys_dir=keys_dir,
            listen="127.0.0.1:0",
            max_staleness=max_staleness,
            poll_interval=poll_interval,
            tls=tls,
            **options,
        )
        await app.start()
        if wait_first_poll:
            await app.first_poll()
        return app

    return RunningGate(loop.run(create()), loop)


@contextmanager
def running_gate(db_url: str, keys_dir: Path, **options: Any) -> Iterator[RunningGate]:
    gate = start_gate(db_url, keys_dir, **options)
    try:
        yield gate
    finally:
        gate.stop()


# --- the registry it serves ------------------------------------------------------------------


class GateRegistry:
    """An initialised registry on ``url`` with its key in ``keys_dir``, plus raw SQL access."""

    def __init__(self, url: str, keys_dir: Path) -> None:
        self.url = url
        self.keys_dir = keys_dir
        self.db = Database(url)
        self.signer: Signer = init_registry(self.db, keys_dir).signer

    def load(self, records: Iterable[Mapping[str, Any]], now: datetime | None = None) -> int:
        """Import records that must all be valid; returns the new registry version."""
        report: ImportReport = import_lines(
            self.db,
            (orjson.dumps(dict(r)) for r in records),
            self.signer,
            state_dir=default_state_dir(self.keys_dir),
            now=now,
        )
        assert report.ok, [str(e) for e in report.errors]
        return self.version()

    def sql(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.db.engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []

    def version(self) -> int:
        return int(self.sql("SELECT size FROM head ORDER BY serial DESC LIMIT 1")[0][0])

    def checkpoint_note(self) -> bytes:
        """The newest head's note with its cosignature line, as the gate reads it."""
        rows = self.sql("SELECT note, cosignature FROM head ORDER BY serial DESC LIMIT 1")
        note, cosignature = rows[0]
        return bytes(note) + bytes(cosignature or b"")

    def cosign(self, now: datetime | None = None) -> datetime:
        """Cosign the newest head again, dated ``now`` (default: now), as the registry
        service's heartbeat does; returns the time it carries (whole seconds)."""
        with self.db.session() as session:
            row = session.scalars(select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).one()
            cosign_head(self.signer, row, now or datetime.now(UTC))
            assert row.cosigned_at is not None
            return row.cosigned_at

    def status_envelope(self, structure_id: str) -> bytes:
        rows = self.sql(
            "SELECT envelope FROM status_record WHERE structure_id = :sid", sid=structure_id
        )
        assert len(rows) == 1, rows
        return bytes(rows[0][0])

    def close(self) -> None:
        self.db.dispose()


class Heartbeat:
    """Cosigns the registry's newest head every ``interval`` seconds in a thread of its own, as
    the registry service does; a beat that fails (a table made to vanish) is skipped.

    ``with Heartbeat(registry):`` runs it for the block; ``pause()`` stops cosigning without
    stopping the thread (a registry that went quiet), ``resume()`` starts again.
    """

    def __init__(self, registry: GateRegistry, interval: float = 0.2) -> None:
        self.registry = registry
        self.interval = interval
        self.beats = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.registry.cosign()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def pause(self) -> None:
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self.registry.cosign()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self._paused.is_set():
                continue
            try:
                self.registry.cosign()
            except sa.exc.SQLAlchemyError:
                continue
            self.beats += 1


def signed_head(
    signer: Signer,
    entries: Mapping[str, bytes],
    *,
    size: int,
    serial: int = 1,
    cosigned_at: datetime | None = None,
) -> RegistryHead:
    """A verified registry head over a log of ``size`` made-up events and the status map of
    ``entries`` (structure id to record digest), signed and cosigned at ``cosigned_at``."""
    tree = CompactTree()
    for index in range(size):
        tree.append(leaf_hash(b"event %d" % index))
    row = sign_head(
        signer,
        origin=signer.name,
        tree=tree,
        status_map=StatusMap(entries.items()),
        serial=serial,
        now=cosigned_at or datetime.now(UTC),
    )
    return verify_registry_head(row.cosigned_note(), signer.verifier)


# --- records (JSON Lines objects) ------------------------------------------------------------


@contextmanager
def served_registry(
    directory: Path, *loads: Iterable[Mapping[str, Any]], now: datetime | None = None
) -> Iterator[tuple[GateRegistry, RunningGate]]:
    """A SQLite registry in ``directory`` holding ``loads`` (one import each), and a gate on it."""
    registry = GateRegistry(f"sqlite:///{directory / 'registry.db'}", directory / "keys")
    try:
        for records in loads:
            registry.load(records, now=now)
        with running_gate(registry.url, registry.keys_dir) as gate:
            yield registry, gate
    finally:
        registry.close()


def day(days: float, now: datetime | None = None) -> str:
    """RFC 3339 time ``days`` from now (negative: in the past)."""
    return format_time((now or datetime.now(UTC)) + timedelta(days=days))


def permit(
    pid: str,
    sid: str,
    kind: str,
    status: str = "valid",
    issued: str | None = None,
    expires: str | None = None,
    use: str | None = None,
) -> dict[str, Any]:
    """A permit line, issued 900 days ago unless told otherwise (times relative to now)."""
    extra = {name: value for name, value in (("expires", expires), ("use", use)) if value}
    return registry_support.permit(pid, sid, kind, status, issued or day(-900), **extra)


def case(
    cid: str, sid: str, stage: str, kind: str = "deviates_from_permit", source: str = "patrol"
) -> dict[str, Any]:
    """A case line, opened five days ago."""
    return registry_support.case(cid, sid, stage, kind, source, opened=day(-5))


def urban_ok(sid: str, use: str = "residential") -> list[dict[str, Any]]:
    """An urban structure holding every permit in force (the property certificate too)."""
    return [
        structure(sid),
        permit(f"P-{sid}-lup", sid, "land_use_planning"),
        permit(f"P-{sid}-lc", sid, "land_certificate"),
        permit(f"P-{sid}-cp", sid, "construction_planning", use=use),
        permit(f"P-{sid}-po", sid, "property_ownership", use=use),
    ]


# --- wire-level requests and answers -----------------------------------------------------------


def connection(
    sid: str,
    utility: int = pb.UTILITY_WATER,
    kind: int = pb.CONNECTION_KIND_PERMANENT,
    *,
    requested_until: datetime | None = None,
    application_id: str = "",
    receipt: bool = False,
) -> pb.ConnectionCheck:
    msg = pb.ConnectionCheck(
        structure_id=sid,
        utility=utility,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        application_id=application_id,
        receipt=receipt,
    )
    if requested_until is not None:
        msg.requested_until.FromDatetime(requested_until)
    return msg


def registration(
    sid: str,
    kind: int = pb.REGISTRATION_KIND_INITIAL,
    *,
    application_id: str = "",
    receipt: bool = False,
) -> pb.RegistrationCheck:
    return pb.RegistrationCheck(
        structure_id=sid,
        kind=kind,  # type: ignore[arg-type]
        application_id=application_id,
        receipt=receipt,
    )


def premises(
    sid: str,
    office: int,
    declared_use: str,
    *,
    application_id: str = "",
    receipt: bool = False,
) -> pb.PremisesCheck:
    return pb.PremisesCheck(
        structure_id=sid,
        office=office,  # type: ignore[arg-type]
        declared_use=declared_use,
        application_id=application_id,
        receipt=receipt,
    )


AnyCheck = pb.ConnectionCheck | pb.RegistrationCheck | pb.PremisesCheck

NOTIFYING_OFFICES = frozenset(
    {pb.OFFICE_MARKET_REGULATION, pb.OFFICE_CULTURE, pb.OFFICE_HEALTH, pb.OFFICE_TAX}
)
"""The offices whose premises checks must carry an application id (they record notices)."""


def batch_check(correlation_id: str, check: AnyCheck | None) -> pb.Check:
    out = pb.Check(correlation_id=correlation_id)
    if isinstance(check, pb.ConnectionCheck):
        out.connection.CopyFrom(check)
    elif isinstance(check, pb.RegistrationCheck):
        out.registration.CopyFrom(check)
    elif isinstance(check, pb.PremisesCheck):
        out.premises.CopyFrom(check)
    return out


class Wire:
    """A blocking channel and stub to a gate, with one call per check message type."""

    def __init__(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float = 10.0,
        *,
        own_connection: bool = False,
    ) -> None:
        """``own_connection``: a TCP connection of this channel's own (gRPC otherwise shares one
        among the channels of a process to the same target)."""
        options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
        self.channel = (
            grpc.insecure_channel(target, options)
            if credentials is None
            else grpc.secure_channel(target, credentials, options)
        )
        self.stub = gate_pb2_grpc.PermitGateStub(self.channel)  # type: ignore[no-untyped-call]
        self.timeout = timeout

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()

    def ask(self, check: AnyCheck, timeout: float | None = None) -> pb.Decision:
        method = {
            pb.ConnectionCheck: self.stub.CheckConnection,
            pb.RegistrationCheck: self.stub.CheckRegistration,
            pb.PremisesCheck: self.stub.VerifyPremises,
        }[type(check)]
        decision: pb.Decision = method(check, timeout=timeout or self.timeout)
        return decision

    def batches(self, batches: Iterable[pb.CheckBatch]) -> list[pb.DecisionBatch]:
        return list(self.stub.BatchCheck(iter(list(batches)), timeout=self.timeout))

    def keys(self) -> pb.KeySet:
        keyset: pb.KeySet = self.stub.GetKeys(pb.GetKeysRequest(), timeout=self.timeout)
        return keyset


Why = tuple[str, str | None, str | None, int]
"""One reason as (code, permit kind, case id, article), names without the enum prefixes."""


def verdict(decision: pb.Decision) -> str:
    return str(pb.Verdict.Name(decision.verdict)).removeprefix("VERDICT_")


def reasons(decision: pb.Decision) -> list[Why]:
    """The reasons, sorted (DOMAIN.md fixes the set of reasons, not their order)."""
    out: list[Why] = []
    for r in decision.reasons:
        kind = (
            None
            if r.permit_kind == pb.PERMIT_KIND_UNSPECIFIED
            else str(pb.PermitKind.Name(r.permit_kind)).removeprefix("PERMIT_KIND_").lower()
        )
        out.append(
            (
                str(pb.ReasonCode.Name(r.code)).removeprefix("REASON_CODE_"),
                kind,
                r.case_id or None,
                r.article,
            )
        )
    return sorted(out, key=lambda w: (w[0], w[1] or "", w[2] or "", w[3]))


def codes(decision: pb.Decision) -> set[str]:
    return {w[0] for w in reasons(decision)}


def cosigned_at(gate: RunningGate) -> datetime:
    """When the registry last cosigned the head the gate holds (the gate's freshness counts
    from it: stale once ``max_staleness`` has passed since)."""
    head = gate.app.cache.head
    assert head is not None and head.cosigned_at is not None
    return head.cosigned_at


def wait_for(probe: Callable[[], T | None], timeout: float, interval: float = 0.02) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# --- verifiers written from the specifications -------------------------------------------------


@dataclass(frozen=True)
class RawKey:
    """A C2SP signed-note verifier key, parsed by hand."""

    name: str
    key_id: bytes
    raw: bytes
    public: Ed25519PublicKey = field(repr=False)


def parse_key(text: str) -> RawKey:
    name, hex_id, blob = text.strip().split("+", 2)
    raw = base64.b64decode(blob, validate=True)
    assert len(raw) == 33 and raw[0] == 0x01, "not an Ed25519 verifier key"
    key_id = bytes.fromhex(hex_id)
    assert key_id == hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4], "bad key id"
    return RawKey(name, key_id, raw[1:], Ed25519PublicKey.from_public_bytes(raw[1:]))


def open_note(note: bytes, key: RawKey) -> bytes:
    """Verify a signed note's signature line by ``key`` by hand; return the signed body."""
    text = note.decode()
    split = text.rindex("\n\n")
    body, signatures = text[: split + 1], text[split + 2 :]
    named = [line for line in signatures.splitlines() if line.startswith(f"\u2014 {key.name} ")]
    blobs = [base64.b64decode(line.split(" ")[2], validate=True) for line in named]
    mine = [blob for blob in blobs if blob[:4] == key.key_id]  # not the cosignature (type 0x04)
    assert len(mine) == 1, signatures
    key.public.verify(mine[0][4:], body.encode())  # raises InvalidSignature
    return body.encode()


def checkpoint_of(body: bytes) -> tuple[str, int, bytes]:
    """(origin, size, root hash) of a C2SP tlog-checkpoint body."""
    origin, size, root, *_ = body.decode().split("\n")
    return origin, int(size), base64.b64decode(root, validate=True)


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding, from the DSSE protocol document."""
    t = payload_type.encode()
    return b"DSSEv1 " + b"%d " % len(t) + t + b" %d " % len(payload) + payload


def open_dsse(envelope: bytes, key: RawKey, payload_type: str) -> dict[str, Any]:
    """Verify a DSSE envelope by hand; return the decoded (canonical) JSON payload."""
    obj = json.loads(envelope)
    assert obj["payloadType"] == payload_type
    payload = base64.b64decode(obj["payload"], validate=True)
    [signature] = obj["signatures"]
    assert signature["keyid"] == f"{key.name}+{key.key_id.hex()}"
    key.public.verify(base64.b64decode(signature["sig"]), dsse_pae(payload_type, payload))
    decoded: dict[str, Any] = json.loads(payload)
    canonical = json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical.encode() == payload, "payload is not canonical JSON"
    return decoded


def map_root_by_hand(entries: Mapping[str, bytes]) -> bytes:
    """The status map's root over ``entries`` (structure id to record SHA-256), from its
    definition: keys ``SHA-256(id)``, leaves ``SHA-256(0x00||key||value)``, nodes
    ``SHA-256(0x01||left||right)``, an empty subtree 32 zero bytes, a one-entry subtree its
    leaf, bits taken from the most significant down."""
    keyed = sorted((hashlib.sha256(sid.encode()).digest(), value) for sid, value in entries.items())

    def node(part: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not part:
            return bytes(32)
        if len(part) == 1:
            key, value = part[0]
            return hashlib.sha256(b"\x00" + key + value).digest()
        bit = [(key[depth // 8] >> (7 - depth % 8)) & 1 for key, _ in part]
        left = [e for e, b in zip(part, bit, strict=True) if b == 0]
        right = [e for e, b in zip(part, bit, strict=True) if b == 1]
        return hashlib.sha256(b"\x01" + node(left, depth + 1) + node(right, depth + 1)).digest()

    return node(keyed, 0)


def reseal_payload(envelope: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """The envelope with its payload bytes changed and the old signature kept (a forgery)."""
    obj = json.loads(envelope)
    payload = change(base64.b64decode(obj["payload"]))
    obj["payload"] = base64.b64encode(payload).decode()
    return json.dumps(obj).encode()


# --- TLS material --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path

    def client_credentials(self, *, with_cert: bool = True) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_cert.read_bytes(),
            private_key=self.client_key.read_bytes() if with_cert else None,
            certificate_chain=self.client_cert.read_bytes() if with_cert else None,
        )

    def stranger_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_cert.read_bytes(),
            private_key=self.stranger_key.read_bytes(),
            certificate_chain=self.stranger_cert.read_bytes(),
        )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca[1], hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_pki(directory: Path, client_cn: str) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate named
    ``client_cn``, and a client certificate from an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("permitgate test CA")
    server = _leaf(
        "permitgate gate",
        ca,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client = _leaf(client_cn, ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _leaf("stranger", _ca("another CA"), ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "ca.pem": ca[0].public_bytes(serialization.Encoding.PEM),
        "server.pem": server[0],
        "server.key": server[1],
        "client.pem": client[0],
        "client.key": client[1],
        "stranger.pem": stranger[0],
        "stranger.key": stranger[1],
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    d = directory
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "stranger.pem",
        d / "stranger.key",
    )


def stderr_lines(process: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The lines a served process writes to stderr, as they come, and the daemon thread that
    reads them (join it, after the process ended, to have every line)."""
    assert process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()

    def read(stream: IO[str]) -> None:
        for text in stream:
            lines.put(text)

    reader = threading.Thread(target=read, args=(process.stderr,), daemon=True)
    reader.start()
    return lines, reader
