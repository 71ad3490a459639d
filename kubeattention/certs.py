"""``kubeattention certs``: a development CA and the certificates the demo and tests use.

What it writes into ``--out DIR`` (PEM; keys are ECDSA P-256, mode 0600):

* ``ca.pem`` / ``ca-key.pem`` — the development CA. An existing CA in DIR is reused, so
  running the command again with more ``--nodes`` adds certificates the running
  aggregator already trusts.
* ``aggregator.pem`` / ``aggregator-key.pem`` — the aggregator's server certificate, with
  the SANs an agent or scheduler dials: ``localhost``, ``127.0.0.1``, ``::1`` and the
  in-cluster Service names ``kubeattention-aggregator[.kubeattention-system[.svc[.cluster.local]]]``
  (plus ``--hosts``). It also serves a TLS redis-server in the tests.
* ``node-NAME.pem`` / ``node-NAME-key.pem`` — one client certificate per ``--nodes`` entry.
* ``scheduler-NAME.pem`` / ``scheduler-NAME-key.pem`` — one client certificate per
  ``--schedulers`` entry (default ``kube-scheduler``): kube-scheduler's extender
  ``tlsConfig``, ``kubeattention score``, the rebalancer.

The identity the aggregator reads is the certificate's URI SAN (see aggregator/security/auth.py):
``spiffe://kubeattention/node/NAME`` or ``spiffe://kubeattention/scheduler/NAME``; the
subject CN carries the same NAME for people reading ``openssl x509 -text``. cert-manager
issues the same certificates with ``spec.uris``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wire.schema import k8s_name_problem

SPIFFE_TRUST_DOMAIN = "kubeattention"
NODE_KIND = "node"
SCHEDULER_KIND = "scheduler"
DEFAULT_DAYS = 365
DEFAULT_SCHEDULERS = ("kube-scheduler",)
#: Where the aggregator is reached: loopback for the demo and tests, the Service in-cluster.
SERVICE_NAME = "kubeattention-aggregator"
SERVICE_NAMESPACE = "kubeattention-system"
DEFAULT_SERVER_HOSTS = (
    "localhost",
    "127.0.0.1",
    "::1",
    SERVICE_NAME,
    f"{SERVICE_NAME}.{SERVICE_NAMESPACE}",
    f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc",
    f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc.cluster.local",
)


def spiffe_id(kind: str, name: str) -> str:
    return f"spiffe://{SPIFFE_TRUST_DOMAIN}/{kind}/{name}"


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class DevPKI:
    """Paths of what :func:`create` wrote."""

    ca: Path
    ca_key: Path
    server: Issued
    nodes: dict[str, Issued]
    schedulers: dict[str, Issued]


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _validity(days: int, now: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    now = now or dt.datetime.now(dt.UTC)
    # a minute of slack for clocks that lag the one that issued the certificate
    return now - dt.timedelta(minutes=1), now + dt.timedelta(days=days)


def _ca(out: Path, days: int, now: dt.datetime | None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = out / "ca.pem", out / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        return cert, key
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KubeAttention development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "KubeAttention development CA"),
        ]
    )
    start, end = _validity(days, now)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert, key


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue(
    ca_cert: x509.Certificate,
    ca_key,
    common_name: str,
    *,
    sans: list[x509.GeneralName],
    server: bool,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
) -> tuple[x509.Certificate, object]:
    """A leaf certificate signed by the CA: (certificate, private key)."""
    key = _new_key()
    start, end = _validity(days, now)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KubeAttention development"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _issue_to(
    out: Path, stem: str, ca_cert, ca_key, cn: str, sans, server: bool, days: int, now: dt.datetime | None
) -> Issued:
    cert, key = issue(ca_cert, ca_key, cn, sans=sans, server=server, days=days, now=now)
    issued = Issued(out / f"{stem}.pem", out / f"{stem}-key.pem")
    _write_key(issued.key, key)
    _write_cert(issued.cert, cert)
    return issued


def name_problems(flag: str, names: Sequence[str]) -> list[str]:
    problems = []
    for n in names:
        if (why := k8s_name_problem(n)) is not None:
            problems.append(f"{flag}: {why}")
    if len(set(names)) != len(names):
        problems.append(f"{flag}: names repeat: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    return problems


def create(
    out: Path,
    nodes: list[str],
    schedulers: Sequence[str] = DEFAULT_SCHEDULERS,
    *,
    hosts: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
) -> DevPKI:
    """Write (or extend) a development PKI in ``out``. Raises ValueError naming a bad input."""
    problems = name_problems("--nodes", nodes) + name_problems("--schedulers", schedulers)
    if days < 1:
        problems.append(f"--days: must be >= 1, got {days}")
    if problems:
        raise ValueError("; ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _ca(out, days, now)
    server_hosts = list(dict.fromkeys([*DEFAULT_SERVER_HOSTS, *hosts]))
    server = _issue_to(
        out, "aggregator", ca_cert, ca_key, SERVICE_NAME, [_san(h) for h in server_hosts], True, days, now
    )
    issued_nodes = {
        n: _issue_to(
            out,
            f"node-{n}",
            ca_cert,
            ca_key,
            n,
            [x509.UniformResourceIdentifier(spiffe_id(NODE_KIND, n))],
            False,
            days,
            now,
        )
        for n in nodes
    }
    issued_scheds = {
        s: _issue_to(
            out,
            f"scheduler-{s}",
            ca_cert,
            ca_key,
            s,
            [x509.UniformResourceIdentifier(spiffe_id(SCHEDULER_KIND, s))],
            False,
            days,
            now,
        )
        for s in schedulers
    }
    return DevPKI(out / "ca.pem", out / "ca-key.pem", server, issued_nodes, issued_scheds)


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="directory to write the PEM files into (an existing ca.pem/ca-key.pem there is reused)",
    )
    p.add_argument(
        "--nodes",
        required=True,
        metavar="A,B,C",
        help="node names, comma-separated: one client certificate each (identity "
        f"spiffe://{SPIFFE_TRUST_DOMAIN}/node/NAME)",
    )
    p.add_argument(
        "--schedulers",
        default=",".join(DEFAULT_SCHEDULERS),
        metavar="A,B",
        help="scoring clients, comma-separated: one client certificate each (identity "
        f"spiffe://{SPIFFE_TRUST_DOMAIN}/scheduler/NAME; default {','.join(DEFAULT_SCHEDULERS)})",
    )
    p.add_argument(
        "--hosts",
        default="",
        metavar="H1,H2",
        help="extra DNS names or IPs for the aggregator's server certificate (always: "
        f"{', '.join(DEFAULT_SERVER_HOSTS)})",
    )
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity (default {DEFAULT_DAYS})")


def run(args: argparse.Namespace) -> int:
    try:
        pki = create(
            Path(args.out), _split(args.nodes), _split(args.schedulers), hosts=_split(args.hosts), days=args.days
        )
    except ValueError as e:
        print(f"kubeattention certs: {e}", file=sys.stderr)
        return 2
    print(f"development CA: {pki.ca} (key {pki.ca_key}) — for development and tests only")
    print(f"aggregator:     {pki.server.cert} (key {pki.server.key})")
    for kind, issued in (("node", pki.nodes), ("scheduler", pki.schedulers)):
        for name, i in issued.items():
            print(f"{kind + ' ' + name + ':':<15} {i.cert} (key {i.key}) identity {spiffe_id(kind, name)}")
    return 0
