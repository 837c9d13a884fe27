"""Who may read the working group's page: an enrolled department, by its client certificate.

The page shows what the department read calls show (cases, referrals, parties, the inbox), so
it admits whom they admit. The TLS handshake requires a client certificate issued by the
departments' CA (``client_tls_context``: the service's ``--client-ca``); a caller without one
never gets to HTTP. ``DepartmentsOnly`` then answers 403 unless the certificate's subject O is an
enrolled department whose key is not revoked: the same two steps as the service's
``authorise`` (``registry.identity``), read from the registry's state on each request, so an
enrolment or revocation counts at once.

uvicorn does not hand the peer certificate to the application, so ``ClientCertificateH11``
(uvicorn's h11 protocol) puts it, DER, in the connection's ASGI state as the TLS handshake
leaves it; a request whose state holds none is refused (403), never served.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from registry.department_keys import DepartmentDirectory
from registry.identity import IdentityRefused, enrolled_department, subject_department
from registry.web.app import SECURITY_HEADERS

__all__ = ["PEER_CERTIFICATE", "ClientCertificateH11", "DepartmentsOnly", "require_client_ca"]

PEER_CERTIFICATE: Final = "permitgate.peer_certificate"
"""The key in the ASGI state under which the connection's client certificate (DER) is kept."""


def require_client_ca(context: ssl.SSLContext, client_ca: Path) -> None:
    """Make ``context`` (a server's) require a client certificate issued by ``client_ca``."""
    context.load_verify_locations(cafile=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED


class ClientCertificateH11(H11Protocol):
    """uvicorn's h11 protocol, keeping the connection's verified client certificate (DER) in
    the state every request of the connection is given (``scope["state"]``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        ssl_object = transport.get_extra_info("ssl_object")
        peer = None if ssl_object is None else ssl_object.getpeercert(binary_form=True)
        self.app_state = {
            **{k: v for k, v in self.app_state.items() if k != PEER_CERTIFICATE},
            **({} if peer is None else {PEER_CERTIFICATE: peer}),
        }
        super().connection_made(transport)


class DepartmentsOnly:
    """403 to a request whose client certificate does not name an enrolled, active department
    of ``directory``; the rest go on to ``app``."""

    def __init__(self, app: ASGIApp, directory: DepartmentDirectory) -> None:
        self.app = app
        self.directory = directory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        why = self.refusal(scope.get("state", {}).get(PEER_CERTIFICATE))
        if why is None:
            await self.app(scope, receive, send)
            return
        refused = Response(
            f"403 Forbidden: {why}\n",
            status_code=403,
            media_type="text/plain",
            headers=dict(SECURITY_HEADERS),
        )
        await refused(scope, receive, send)

    def refusal(self, peer: Any) -> str | None:
        """Why the caller with client certificate ``peer`` (DER) is refused; None: admitted."""
        if not isinstance(peer, bytes) or not peer:
            return "the page needs an enrolled department's client certificate"
        try:
            department = subject_department(x509.load_der_x509_certificate(peer))
            enrolled_department(self.directory, department)
        except ValueError as exc:
            return f"client certificate: not a certificate ({exc})"
        except IdentityRefused as exc:
            return exc.message
        return None
