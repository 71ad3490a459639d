"""The aggregator's transport and authentication flags: parsed, checked and turned into
the TLS settings and the Authenticator the gRPC and HTTP servers use.

Modes (at least one, or the aggregator refuses to start):

* ``--tls-cert FILE --tls-key FILE`` — gRPC and HTTP over TLS;
  ``--tls-client-ca FILE`` adds client certificates (mTLS): node and scheduler identity;
* ``--auth-token-file FILE`` — static bearer tokens (non-Kubernetes use);
* ``--auth-tokenreview`` — bearer tokens verified by the Kubernetes TokenReview API;
* ``--insecure`` — plaintext, nobody authenticated, logged as a warning at start.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aggregator.security.auth import (
    DEFAULT_AGENT_SERVICEACCOUNT,
    TOKEN_AUDIENCE,
    Authenticator,
    StaticTokens,
    TokenReviewer,
    kubernetes_token_review,
)
from aggregator.security.server_tls import ServerTLS, check_ca, check_pair

log = logging.getLogger(__name__)

NO_MODE = (
    "no transport security chosen: add --tls-cert FILE --tls-key FILE [--tls-client-ca FILE] (TLS, mTLS), "
    "--auth-token-file FILE or --auth-tokenreview (bearer tokens), or --insecure (plaintext, nobody "
    "authenticated; development only)"
)


class SecuritySetupError(Exception):
    """The configured authentication cannot be set up (e.g. no Kubernetes API for TokenReview)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transport security and authentication (one is required)")
    g.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help="serve gRPC and HTTP over TLS with this certificate (PEM, with its chain); needs --tls-key",
    )
    g.add_argument("--tls-key", default=None, metavar="FILE", help="private key of --tls-cert (PEM)")
    g.add_argument(
        "--tls-client-ca",
        default=None,
        metavar="FILE",
        help="require gRPC clients to present a certificate from this CA (mTLS); identity = its URI SAN "
        "spiffe://kubeattention/node/NAME or .../scheduler/NAME. HTTP: optional, verified",
    )
    g.add_argument(
        "--auth-token-file",
        default=None,
        metavar="FILE",
        help="static bearer tokens, one 'TOKEN node:NAME' or 'TOKEN scheduler:NAME' per line (re-read when it changes)",
    )
    g.add_argument(
        "--auth-tokenreview",
        action="store_true",
        help=f"verify bearer tokens (projected ServiceAccount tokens, audience {TOKEN_AUDIENCE!r}) with "
        "the Kubernetes TokenReview API (in-cluster config, or --kubeconfig)",
    )
    g.add_argument(
        "--auth-agent-serviceaccount",
        default=DEFAULT_AGENT_SERVICEACCOUNT,
        metavar="USER",
        help="with --auth-tokenreview: the agents' ServiceAccount; its tokens are node identities "
        f"(default {DEFAULT_AGENT_SERVICEACCOUNT})",
    )
    g.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC and HTTP and no authentication: anyone who reaches the ports can push "
        "telemetry for any node and score (development only; logged as a warning)",
    )


def problems(cfg) -> list[str]:
    """Every problem with the security flags of an AggregatorConfig, named by flag."""
    out = []
    tls = cfg.tls_cert is not None or cfg.tls_key is not None
    tokens = cfg.auth_token_file is not None or cfg.auth_tokenreview
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        out.append("--tls-cert and --tls-key: give both (the certificate and its private key)")
    if cfg.tls_client_ca is not None and cfg.tls_cert is None:
        out.append("--tls-client-ca: needs --tls-cert and --tls-key (client certificates are checked in TLS)")
    if cfg.insecure and (tls or tokens or cfg.tls_client_ca):
        out.append("--insecure: conflicts with --tls-*/--auth-* (it means plaintext without authentication); drop one")
    if not (cfg.insecure or tls or tokens):
        out.append(NO_MODE)
    for flag, path in (
        ("--tls-cert", cfg.tls_cert),
        ("--tls-key", cfg.tls_key),
        ("--tls-client-ca", cfg.tls_client_ca),
        ("--auth-token-file", cfg.auth_token_file),
    ):
        if path is not None and not Path(path).is_file():
            out.append(f"{flag}: no such file {path!r}")
    if cfg.tls_cert and cfg.tls_key and Path(cfg.tls_cert).is_file() and Path(cfg.tls_key).is_file():
        if (why := check_pair(Path(cfg.tls_cert), Path(cfg.tls_key))) is not None:
            out.append(why)
    if cfg.tls_client_ca and Path(cfg.tls_client_ca).is_file():
        if (why := check_ca(Path(cfg.tls_client_ca), "--tls-client-ca")) is not None:
            out.append(why)
    if cfg.auth_token_file and Path(cfg.auth_token_file).is_file():
        try:
            StaticTokens.parse(Path(cfg.auth_token_file))
        except ValueError as e:
            out.append(str(e))
    if (
        not cfg.auth_agent_serviceaccount.startswith("system:serviceaccount:")
        or cfg.auth_agent_serviceaccount.count(":") != 3
    ):
        out.append(
            f"--auth-agent-serviceaccount: {cfg.auth_agent_serviceaccount!r} is not "
            "system:serviceaccount:NAMESPACE:NAME"
        )
    return out


def server_tls(cfg) -> ServerTLS | None:
    if cfg.tls_cert is None:
        return None
    return ServerTLS(Path(cfg.tls_cert), Path(cfg.tls_key), Path(cfg.tls_client_ca) if cfg.tls_client_ca else None)


def authenticator(cfg, api_client_factory=None) -> Authenticator:
    """The Authenticator for a validated config. ``api_client_factory(kubeconfig)`` builds the
    kubernetes ApiClient for TokenReview (default: kubeapi.api_client.api_client)."""
    verifiers = []
    if cfg.auth_token_file:
        verifiers.append(StaticTokens(Path(cfg.auth_token_file)))
    if cfg.auth_tokenreview:
        if api_client_factory is None:
            from kubeapi.api_client import api_client as api_client_factory
        try:
            api = api_client_factory(cfg.kubeconfig)
        except Exception as e:  # KubeConfigError and friends: no way to reach the API server
            raise SecuritySetupError(f"--auth-tokenreview: {e}") from None
        verifiers.append(TokenReviewer(kubernetes_token_review(api), cfg.auth_agent_serviceaccount))
    return Authenticator(client_certs=cfg.tls_client_ca is not None, verifiers=verifiers)


def describe(cfg) -> str:
    """One line for the start-up log: what protects the ports."""
    if cfg.insecure:
        return "plaintext, no authentication (--insecure)"
    parts = ["TLS" if cfg.tls_cert else "plaintext"]
    if cfg.tls_client_ca:
        parts.append("client certificates (mTLS)")
    if cfg.auth_token_file:
        parts.append(f"tokens from {cfg.auth_token_file}")
    if cfg.auth_tokenreview:
        parts.append("tokens via TokenReview")
    return ", ".join(parts)


def warnings(cfg) -> list[str]:
    """What an operator should hear about at start (logged as WARNING)."""
    out = []
    if cfg.insecure:
        out.append(
            "--insecure: gRPC and HTTP are plaintext and unauthenticated; anyone who reaches the ports can "
            "push telemetry for any node (steering placement) and score. Use TLS with --tls-client-ca or "
            "bearer tokens outside development"
        )
        return out
    if cfg.tls_cert and not (cfg.tls_client_ca or cfg.auth_token_file or cfg.auth_tokenreview):
        out.append(
            "TLS without client identity: traffic is encrypted but any client may push telemetry for any "
            "node and score; add --tls-client-ca, --auth-token-file or --auth-tokenreview"
        )
    if not cfg.tls_cert and (cfg.auth_token_file or cfg.auth_tokenreview):
        out.append(
            "bearer tokens over plaintext: anyone on the path can read and replay them; add --tls-cert and "
            "--tls-key unless a service mesh encrypts this traffic"
        )
    return out
