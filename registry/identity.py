"""Who is calling: the department a mutual-TLS client certificate names.

A department's calls to the registry service come over mutual TLS; its client certificate,
issued by the CA the service trusts (``--client-ca``), carries the department id as the
subject's organisation (O). ``certificate_department`` reads it from the call's TLS
authentication context (the peer certificate as PEM, parsed with ``cryptography``); the service
then requires that department to be enrolled (``registry.department_keys``) and, for a write,
to be the statement's department and the signing key's name (``registry.department_writes``).

A call without a client certificate (plaintext, or TLS without one) is ``UNAUTHENTICATED``,
saying where mutual TLS is served. ``subject_department`` (the certificate's O) and
``enrolled_department`` (the directory's active entry for it) are the same two steps for the
working group's page (``registry.web.admission``), whose TLS hands over the certificate itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from registry.department_keys import DepartmentDirectory
    from registry.log import DepartmentEntry

__all__ = [
    "IdentityRefused",
    "certificate_department",
    "enrolled_department",
    "subject_department",
]


class IdentityRefused(Exception):
    """The caller is not shown to be a department; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def certificate_department(context: Any, where: str | None) -> str:
    """The department (subject O) of the call's client certificate. ``where``: the address
    serving mutual TLS, for the message (None: the service has none configured)."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        if where is None:
            raise IdentityRefused(
                "UNAUTHENTICATED",
                "department calls need mutual TLS: this registry service has none configured "
                "(start it with --tls-cert, --tls-key and --client-ca)",
            )
        raise IdentityRefused(
            "UNAUTHENTICATED",
            f"department calls need mutual TLS: call {where} with the department's client "
            "certificate",
        )
    try:
        cert = x509.load_pem_x509_certificate(pems[0])
    except ValueError as exc:
        raise IdentityRefused(
            "UNAUTHENTICATED", f"client certificate: not a PEM certificate ({exc})"
        ) from exc
    return subject_department(cert)


def subject_department(cert: x509.Certificate) -> str:
    """The department a client certificate names: its subject's one organisation (O)."""
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str) or not names[0].value:
        raise IdentityRefused(
            "UNAUTHENTICATED",
            f"client certificate {cert.subject.rfc4514_string()!r}: its subject must name one "
            "organisation (O), the department id",
        )
    return names[0].value


def enrolled_department(directory: DepartmentDirectory | None, claimed: str) -> DepartmentEntry:
    """The enrolled, active department ``claimed`` (a certificate's O); ``PERMISSION_DENIED``
    saying why when it is not enrolled or its key was revoked (no directory: none is)."""
    department = None if directory is None else directory.lookup(claimed)
    if department is None:
        raise IdentityRefused(
            "PERMISSION_DENIED",
            f"the client certificate names department {claimed!r}, which is not enrolled",
        )
    if not department.active:
        raise IdentityRefused("PERMISSION_DENIED", f"department {claimed!r}: its key was revoked")
    return department
