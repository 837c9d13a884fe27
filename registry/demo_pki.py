"""A throwaway certificate authority for the demo and the tests: a CA, the registry service's
server certificate, and one client certificate per department.

Departments call the registry service over mutual TLS, and the registry takes a caller's
department from its client certificate's subject organisation (O): ``registry.identity``. In
production the city's own CA issues these; here ``make_demo_pki`` writes a CA made on the spot
(ECDSA P-256, valid for ``days``), so ``make demo`` and the tests need no outside PKI. Files, all
PEM, in ``directory``:

* ``ca.pem`` (and ``ca.key``, kept so more client certificates can be issued later);
* ``server.pem``, ``server.key``: for 127.0.0.1 and localhost (and any ``hosts`` given);
* ``<department>.pem``, ``<department>.key`` per department: subject O = the department id,
  CN = its name when given, extended key usage clientAuth.

Private keys are written with mode 0600. Nothing here is fit to guard real data: the CA's key
sits beside its certificate.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DemoPki", "issue_client_certificate", "make_demo_pki"]

_DEFAULT_DAYS = 30
_Authority = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


@dataclass(frozen=True)
class DemoPki:
    """Where the files are."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def client(self, department: str) -> tuple[Path, Path]:
        """The certificate and key of ``department``'s client certificate."""
        return self.directory / f"{department}.pem", self.directory / f"{department}.key"


def make_demo_pki(
    directory: Path,
    departments: Iterable[str] | Mapping[str, str],
    *,
    hosts: Iterable[str] = (),
    days: int = _DEFAULT_DAYS,
    ca_name: str = "permitgate demo CA",
) -> DemoPki:
    """Write a new CA, a server certificate and a client certificate per department (a mapping
    gives each department's name for its CN)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    authority = _authority(ca_name, days)
    _write(directory / "ca.pem", _pem(authority[0]))
    _write_key(directory / "ca.key", authority[1])
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "permitgate registry")])
    server_cert, server_key = _leaf(
        authority, subject, ExtendedKeyUsageOID.SERVER_AUTH, names, days
    )
    _write(directory / "server.pem", _pem(server_cert))
    _write_key(directory / "server.key", server_key)
    pki = DemoPki(
        directory, directory / "ca.pem", directory / "server.pem", directory / "server.key"
    )
    named = departments if isinstance(departments, Mapping) else {d: d for d in departments}
    for department, name in named.items():
        issue_client_certificate(pki, department, name=name, days=days)
    return pki


def issue_client_certificate(
    pki: DemoPki, department: str, *, name: str | None = None, days: int = _DEFAULT_DAYS
) -> tuple[Path, Path]:
    """Issue ``department`` a client certificate from the demo CA (O = ``department``)."""
    authority = _load_authority(pki)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, department),
            x509.NameAttribute(NameOID.COMMON_NAME, name or department),
        ]
    )
    cert, key = _leaf(authority, subject, ExtendedKeyUsageOID.CLIENT_AUTH, [], days)
    cert_path, key_path = pki.client(department)
    _write(cert_path, _pem(cert))
    _write_key(key_path, key)
    return cert_path, key_path


def _authority(name: str, days: int) -> _Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
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


def _load_authority(pki: DemoPki) -> _Authority:
    cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    key = serialization.load_pem_private_key((pki.directory / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.directory / 'ca.key'}: not an EC private key")
    return cert, key


def _leaf(
    authority: _Authority,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(authority[1], hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
