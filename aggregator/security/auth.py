"""Who is calling, and may they: node identity for Push, scheduler identity for scoring.

Principals come from one of three places, checked in this order:

1. **A client certificate** (``--tls-client-ca``, mTLS). The identity is the certificate's
   URI SAN: ``spiffe://kubeattention/node/NAME`` is node NAME,
   ``spiffe://kubeattention/scheduler/NAME`` a scoring client (``kubeattention certs``
   issues both; cert-manager does with ``spec.uris``). The CN is not trusted.
2. **A static token file** (``--auth-token-file``), one ``TOKEN IDENTITY`` per line, where
   IDENTITY is ``node:NAME`` or ``scheduler:NAME``; ``#`` starts a comment. The file is
   re-read when it changes (a bad edit keeps the previous tokens and logs why).
3. **Kubernetes TokenReview** (``--auth-tokenreview``): the bearer token is sent to the API
   server with the audience ``kubeattention``. A token of the agent's ServiceAccount
   (``--auth-agent-serviceaccount``) is node NAME, from the user's extra
   ``authentication.kubernetes.io/node-name`` (bound pod tokens carry it from Kubernetes
   1.30 on); any other ServiceAccount whose token was issued for that audience is a
   scoring client. Answers are cached briefly (accepted 10 s, refused 2 s).

Rules (the README's threat model): a node may push only its own telemetry
(PERMISSION_DENIED naming both names otherwise); only scheduler identities may score
(BatchScore and the extender); health, reflection and the read-only HTTP endpoints are
open. Without any authentication configured (``--insecure``, or TLS without client
identity) every caller is the anonymous principal and everything is allowed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wire.schema import k8s_name_problem

log = logging.getLogger(__name__)

SPIFFE_PREFIX = "spiffe://kubeattention/"
NODE = "node"
SCHEDULER = "scheduler"
ANONYMOUS = "anonymous"
KINDS = (NODE, SCHEDULER)
TOKEN_AUDIENCE = "kubeattention"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
DEFAULT_AGENT_SERVICEACCOUNT = "system:serviceaccount:kubeattention-system:kubeattention-agent"
MIN_TOKEN_CHARS = 16
TOKENREVIEW_TTL_S = 10.0
TOKENREVIEW_NEGATIVE_TTL_S = 2.0
TOKENREVIEW_CACHE_ENTRIES = 4096
#: How often a changed --auth-token-file is noticed (one stat() per this many seconds).
TOKEN_FILE_CHECK_S = 1.0
BEARER = "bearer "


class AuthError(Exception):
    """Refused; ``grpc_code`` / ``http_status`` say how to answer."""

    grpc_code = "UNAUTHENTICATED"
    http_status = 401


class Unauthenticated(AuthError):
    pass


class PermissionDenied(AuthError):
    grpc_code = "PERMISSION_DENIED"
    http_status = 403


class VerifierUnavailable(AuthError):
    """The token could not be checked now (TokenReview API unreachable): retry."""

    grpc_code = "UNAVAILABLE"
    http_status = 503


@dataclass(frozen=True)
class Principal:
    kind: str
    """``node``, ``scheduler`` or ``anonymous``."""
    name: str
    """Node or client name; "" when a node token carries no node name."""
    via: str
    """certificate, token file, TokenReview or none."""

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r} ({self.via})" if self.kind != ANONYMOUS else "anonymous caller"


ANONYMOUS_PRINCIPAL = Principal(ANONYMOUS, "", "none")


def parse_identity(text: str, where: str, via: str) -> Principal:
    """``node:NAME`` / ``scheduler:NAME`` -> Principal; ValueError naming ``where``."""
    kind, sep, name = text.partition(":")
    if not sep or kind not in KINDS:
        raise ValueError(f"{where}: identity {text!r} must be node:NAME or scheduler:NAME")
    if (why := k8s_name_problem(name)) is not None:
        raise ValueError(f"{where}: identity {text!r}: name {why}")
    return Principal(kind, name, via)


def principal_from_uris(uris: Iterable[str]) -> Principal | None:
    """The kubeattention identity among a certificate's SANs, or None."""
    found = []
    for uri in uris:
        if uri.startswith(SPIFFE_PREFIX):
            found.append(uri)
    if len(found) != 1:
        return None
    kind, _, name = found[0][len(SPIFFE_PREFIX) :].partition("/")
    if kind not in KINDS or k8s_name_problem(name) is not None:
        return None
    return Principal(kind, name, "certificate")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal | None:
        """The token's principal; None when this verifier does not know the token."""


class StaticTokens:
    """``--auth-token-file``: ``TOKEN node:NAME`` / ``TOKEN scheduler:NAME`` per line."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens = self.parse(self.path)  # raises ValueError: the aggregator refuses to start
        self._stamp = self._file_stamp()
        self._checked = clock()

    @staticmethod
    def parse(path: Path) -> dict[bytes, Principal]:
        try:
            text = path.read_text()
        except OSError as e:
            raise ValueError(f"--auth-token-file: cannot read {str(path)!r}: {e.strerror or e}") from None
        tokens: dict[bytes, Principal] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"--auth-token-file {path}:{number}"
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(
                    f"{where}: expected 'TOKEN node:NAME' or 'TOKEN scheduler:NAME', got {len(parts)} fields"
                )
            token, identity = parts
            if len(token) < MIN_TOKEN_CHARS:
                raise ValueError(
                    f"{where}: token of {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
                    "(e.g. openssl rand -hex 32)"
                )
            key = _digest(token)
            if key in tokens:
                raise ValueError(f"{where}: the same token appears twice")
            tokens[key] = parse_identity(identity, where, "token file")
        if not tokens:
            raise ValueError(f"--auth-token-file: {str(path)!r} holds no tokens")
        return tokens

    def _file_stamp(self):
        try:
            st = os.stat(self.path)
            return st.st_mtime_ns, st.st_size, st.st_ino
        except OSError:
            return None

    def _maybe_reload(self) -> None:
        now = self.clock()
        if now - self._checked < TOKEN_FILE_CHECK_S:
            return
        self._checked = now
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            tokens = self.parse(self.path)
        except ValueError as e:
            log.error("%s; keeping the %d tokens loaded before", e, len(self._tokens))
            return
        log.info("--auth-token-file %s changed: %d tokens loaded", self.path, len(tokens))
        self._tokens = tokens

    def verify(self, token: str) -> Principal | None:
        with self._lock:
            self._maybe_reload()
            return self._tokens.get(_digest(token))


@dataclass(frozen=True)
class ReviewResult:
    """What a TokenReview answered (status), independent of the kubernetes client's types."""

    authenticated: bool
    username: str = ""
    extra: dict | None = None
    audiences: tuple[str, ...] = ()
    error: str = ""


def kubernetes_token_review(api_client) -> Callable[[str], ReviewResult]:
    """A TokenReview call through the real ``kubernetes`` client (in-cluster or a kubeconfig)."""
    from kubernetes import client

    api = client.AuthenticationV1Api(api_client)

    def review(token: str) -> ReviewResult:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[TOKEN_AUDIENCE]))
        status = api.create_token_review(body).status
        user = status.user
        return ReviewResult(
            bool(status.authenticated),
            (user.username or "") if user else "",
            dict(user.extra or {}) if user else {},
            tuple(status.audiences or ()),
            status.error or "",
        )

    return review


class TokenReviewer:
    """``--auth-tokenreview``: bearer tokens verified by the Kubernetes API server."""

    def __init__(
        self,
        review: Callable[[str], ReviewResult],
        agent_serviceaccount: str = DEFAULT_AGENT_SERVICEACCOUNT,
        *,
        ttl_s: float = TOKENREVIEW_TTL_S,
        negative_ttl_s: float = TOKENREVIEW_NEGATIVE_TTL_S,
        max_entries: int = TOKENREVIEW_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.review = review
        self.agent_serviceaccount = agent_serviceaccount
        self.ttl_s, self.negative_ttl_s, self.max_entries = ttl_s, negative_ttl_s, max_entries
        self.clock = clock
        self._cache: OrderedDict[bytes, tuple[float, Principal | str]] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0
        """TokenReview requests made (cache misses)."""

    def _cached(self, key: bytes):
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            if hit[0] <= self.clock():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return hit[1]

    def _remember(self, key: bytes, value, ttl: float) -> None:
        with self._lock:
            self._cache[key] = (self.clock() + ttl, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    def verify(self, token: str) -> Principal | None:
        key = _digest(token)
        hit = self._cached(key)
        if hit is None:
            hit = self._ask(token)
            self._remember(key, hit, self.ttl_s if isinstance(hit, Principal) else self.negative_ttl_s)
        if isinstance(hit, str):
            raise Unauthenticated(hit)
        return hit

    def _ask(self, token: str) -> Principal | str:
        self.calls += 1
        try:
            r = self.review(token)
        except Exception as e:  # the API server, not the caller, failed: do not cache, let them retry
            raise VerifierUnavailable(
                f"cannot verify the bearer token now: TokenReview failed: {type(e).__name__}: {str(e)[:200]}"
            ) from None
        if not r.authenticated:
            return f"bearer token refused by TokenReview{': ' + r.error if r.error else ''}"
        if r.audiences and TOKEN_AUDIENCE not in r.audiences:
            return f"bearer token is not for the audience {TOKEN_AUDIENCE!r} (it is for {', '.join(r.audiences)})"
        if not r.username.startswith("system:serviceaccount:"):
            return f"bearer token of {r.username!r} refused: only ServiceAccount tokens are accepted"
        if r.username == self.agent_serviceaccount:
            names = (r.extra or {}).get(NODE_NAME_EXTRA) or []
            return Principal(NODE, names[0] if len(names) == 1 else "", "TokenReview")
        return Principal(SCHEDULER, r.username.removeprefix("system:serviceaccount:"), "TokenReview")


class Authenticator:
    """Turns what a call carries (certificate SANs, an ``authorization`` header) into a Principal."""

    def __init__(self, *, client_certs: bool = False, verifiers: Iterable[TokenVerifier] = ()):
        self.client_certs = client_certs
        self.verifiers = tuple(verifiers)

    @property
    def enabled(self) -> bool:
        return self.client_certs or bool(self.verifiers)

    @property
    def may_block(self) -> bool:
        """True when verifying may call out (TokenReview): HTTP handlers run it off the event loop."""
        return any(isinstance(v, TokenReviewer) for v in self.verifiers)

    def what_is_accepted(self) -> str:
        ways = []
        if self.client_certs:
            ways.append("a client certificate signed by --tls-client-ca with a spiffe://kubeattention/... URI SAN")
        if self.verifiers:
            ways.append("an 'authorization: Bearer TOKEN' header")
        return " or ".join(ways)

    def principal(self, cert_uris: Iterable[str], authorization: str | None) -> Principal:
        """Raises Unauthenticated (or VerifierUnavailable) naming what was missing or wrong."""
        if not self.enabled:
            return ANONYMOUS_PRINCIPAL
        cert_uris = list(cert_uris)
        if self.client_certs and cert_uris:
            p = principal_from_uris(cert_uris)
            if p is not None:
                return p
        if authorization and self.verifiers:
            if not authorization[: len(BEARER)].lower() == BEARER:
                raise Unauthenticated("the authorization header is not 'Bearer TOKEN'")
            token = authorization[len(BEARER) :].strip()
            if not token:
                raise Unauthenticated("the authorization header carries an empty bearer token")
            for v in self.verifiers:
                p = v.verify(token)
                if p is not None:
                    return p
            raise Unauthenticated("bearer token not recognised (unknown, or revoked from --auth-token-file)")
        if cert_uris:
            raise Unauthenticated(
                f"the client certificate carries no kubeattention identity (SANs: "
                f"{', '.join(cert_uris)[:200]}); expected spiffe://kubeattention/node/NAME or "
                f"spiffe://kubeattention/scheduler/NAME"
            )
        raise Unauthenticated(f"no credentials: present {self.what_is_accepted()}")


def authorize_push(p: Principal, node_name: str) -> None:
    if p.kind == ANONYMOUS:
        return
    if p.kind != NODE:
        raise PermissionDenied(
            f"{p} may not push telemetry: only a node's own identity may (push for node {node_name!r} refused)"
        )
    if not p.name:
        raise PermissionDenied(
            f"{p}: the token carries no node name ({NODE_NAME_EXTRA} is set on bound pod tokens "
            f"from Kubernetes 1.30); push for node {node_name!r} refused"
        )
    if p.name != node_name:
        raise PermissionDenied(f"node {p.name!r} ({p.via}) may push only its own telemetry, not node {node_name!r}")


def authorize_score(p: Principal, what: str = "BatchScore") -> None:
    if p.kind in (ANONYMOUS, SCHEDULER):
        return
    raise PermissionDenied(
        f"{p} may not call {what}: scoring takes a scheduler identity "
        f"(spiffe://kubeattention/scheduler/NAME, a scheduler:NAME token, or a ServiceAccount "
        f"token other than the agent's)"
    )


# --------------------------------------------------------------------------- gRPC adapter


def grpc_principal(auth: Authenticator, context) -> Principal:
    """The caller of a gRPC handler; raises AuthError."""
    if not auth.enabled:
        return ANONYMOUS_PRINCIPAL
    uris: list[str] = []
    if auth.client_certs:
        uris = [v.decode(errors="replace") for v in context.auth_context().get("x509_subject_alternative_name", ())]
    authorization = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            authorization = value
            break
    return auth.principal(uris, authorization)


async def abort_grpc(context, err: AuthError) -> None:
    """Ends a grpc.aio call with the refusal's status code (raises)."""
    import grpc

    await context.abort(getattr(grpc.StatusCode, err.grpc_code), str(err))
