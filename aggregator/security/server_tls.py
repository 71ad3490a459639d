"""Server-side TLS for the aggregator: gRPC credentials, uvicorn settings, the caller's certificate.

gRPC: ``--tls-cert/--tls-key`` serve TLS; with ``--tls-client-ca`` every gRPC client must
present a certificate from that CA (gRPC Python can only require a client certificate or
not ask for one). HTTP: the same certificate; with ``--tls-client-ca`` a client
certificate is *optional* at the TLS layer (verified when presented), so kubelet probes and
Prometheus reach the open read-only endpoints while the extender demands an identity.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from uvicorn.protocols.http.h11_impl import H11Protocol

#: Where the HTTP caller's certificate URIs travel in the ASGI scope (the ASGI TLS extension).
SCOPE_EXTENSION = "tls"


@dataclass(frozen=True)
class ServerTLS:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )

    def uvicorn_kwargs(self) -> dict:
        kw = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            kw.update(ssl_ca_certs=str(self.client_ca), ssl_cert_reqs=ssl.CERT_OPTIONAL, http=PeerCertH11Protocol)
        return kw


def check_pair(cert: Path, key: Path) -> str | None:
    """Why the certificate and key cannot serve TLS, or None (loads them as Python's ssl would)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        return f"--tls-cert {cert} / --tls-key {key}: cannot be used together: {e}"
    return None


def check_ca(path: Path, flag: str) -> str | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(str(path))
    except (ssl.SSLError, OSError) as e:
        return f"{flag} {path}: not a PEM CA bundle: {e}"
    return None


def peer_uris(ssl_object) -> list[str]:
    """URI SANs of the verified client certificate on this TLS connection ([] when none was presented)."""
    if ssl_object is None:
        return []
    cert = ssl_object.getpeercert() or {}
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]


class PeerCertH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, passing the client certificate's URI SANs to the app in the
    ASGI scope (``scope["extensions"]["tls"]["client_cert_uris"]``). uvicorn does not."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        uris = peer_uris(transport.get_extra_info("ssl_object"))
        app = self.app

        async def with_peer(scope, receive, send):
            scope.setdefault("extensions", {})[SCOPE_EXTENSION] = {"client_cert_uris": uris}
            return await app(scope, receive, send)

        self.app = with_peer


def scope_cert_uris(scope) -> list[str]:
    return ((scope.get("extensions") or {}).get(SCOPE_EXTENSION) or {}).get("client_cert_uris", [])
