"""How a client reaches the aggregator's gRPC port: TLS, a client certificate, a bearer token,
or plaintext when asked for explicitly. Shared by the agent's pusher, ``client.batchscore``,
``kubeattention score`` and ``kubeattention rebalance``; the flags are the same everywhere:

* ``--tls-ca FILE`` — TLS, verifying the aggregator against this CA;
* ``--tls-cert FILE --tls-key FILE`` — present this client certificate (mTLS);
* ``--token-file FILE`` — send ``authorization: Bearer <file content>``; the file is re-read
  when it changes (kubelet rotates projected ServiceAccount tokens in place);
* ``--insecure`` — plaintext.

Plaintext is never a default: with none of these the caller gets an error naming them.
"""

from __future__ import annotations

import argparse
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

NO_MODE = (
    "choose how to reach the aggregator: --tls-ca FILE (TLS; with --tls-cert/--tls-key for a client "
    "certificate and/or --token-file for a bearer token), or --insecure (plaintext)"
)


class TokenFileError(OSError):
    """The bearer token file cannot be read, or is empty."""


class TokenFile:
    """A bearer token read from a file and re-read whenever the file changes (mtime, size or
    inode: kubelet swaps projected tokens by renaming a symlinked directory)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""
        self.reloads = 0
        self.token()  # fail now, at start, when the file is unusable

    def _stat(self) -> tuple[int, int, int]:
        st = os.stat(self.path)  # follows symlinks: the ..data swap changes the inode we see
        return st.st_mtime_ns, st.st_size, st.st_ino

    def token(self) -> str:
        with self._lock:
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    text = self.path.read_text().strip()
                    if not text:
                        raise TokenFileError(f"--token-file {self.path}: empty")
                    self._token, self._stamp = text, stamp
                    self.reloads += 1
            except TokenFileError:
                raise
            except OSError as e:
                if not self._token:
                    raise TokenFileError(f"--token-file {self.path}: cannot read: {e.strerror or e}") from None
                # keep the last good token while the file is being replaced
            return self._token


@dataclass(frozen=True)
class ClientSecurity:
    """One client's transport settings; :meth:`problems` names every bad flag at once."""

    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_file: Path | None = None
    insecure: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None or self.tls_cert is not None

    def problems(self) -> list[str]:
        out = []
        if (self.tls_cert is None) != (self.tls_key is None):
            out.append("--tls-cert and --tls-key: give both (the client certificate and its private key)")
        if self.insecure and self.tls:
            out.append("--insecure: conflicts with --tls-ca/--tls-cert (plaintext or TLS, not both)")
        if not self.insecure and not self.tls:
            if self.token_file is not None:
                out.append(
                    "--token-file: a bearer token must not travel in plaintext by default; add --tls-ca FILE "
                    "(TLS), or --insecure if the path is already protected"
                )
            else:
                out.append(NO_MODE)
        for flag, path in (
            ("--tls-ca", self.tls_ca),
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
            ("--token-file", self.token_file),
        ):
            if path is not None and not Path(path).is_file():
                out.append(f"{flag}: no such file {str(path)!r}")
        return out

    def check(self) -> None:
        if problems := self.problems():
            raise ValueError("; ".join(problems))

    def describe(self) -> str:
        if not self.tls:
            how = "plaintext (--insecure)"
        else:
            how = "TLS" + (" with a client certificate" if self.tls_cert else "")
        return how + (" and a bearer token" if self.token_file else "")

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.tls_ca).read_bytes() if self.tls_ca else None,
            private_key=Path(self.tls_key).read_bytes() if self.tls_key else None,
            certificate_chain=Path(self.tls_cert).read_bytes() if self.tls_cert else None,
        )

    def channel(self, target: str, options: list | None = None) -> grpc.Channel:
        creds = self.channel_credentials()
        if creds is None:
            return grpc.insecure_channel(target, options=options)
        return grpc.secure_channel(target, creds, options=options)

    def token_source(self) -> TokenFile | None:
        return TokenFile(self.token_file) if self.token_file is not None else None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ClientSecurity:
        def path(name: str) -> Path | None:
            v = getattr(args, name, None)
            return Path(v) if v else None

        return cls(
            tls_ca=path("tls_ca"),
            tls_cert=path("tls_cert"),
            tls_key=path("tls_key"),
            token_file=path("token_file"),
            insecure=bool(getattr(args, "insecure", False)),
        )


def metadata(tokens: TokenFile | None) -> tuple[tuple[str, str], ...] | None:
    """The call metadata carrying the current bearer token (None without a token file)."""
    if tokens is None:
        return None
    return (("authorization", f"Bearer {tokens.token()}"),)


def add_arguments(p: argparse.ArgumentParser, who: str = "this client") -> None:
    g = p.add_argument_group("connection to the aggregator (--tls-ca or --insecure is required)")
    g.add_argument(
        "--tls-ca", default=None, metavar="FILE", help="TLS: verify the aggregator's certificate against this CA (PEM)"
    )
    g.add_argument(
        "--tls-cert", default=None, metavar="FILE", help=f"client certificate of {who} (mTLS; PEM); needs --tls-key"
    )
    g.add_argument("--tls-key", default=None, metavar="FILE", help="private key of --tls-cert (PEM)")
    g.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help="send the bearer token in this file (re-read when it changes, e.g. a projected "
        "ServiceAccount token with audience kubeattention)",
    )
    g.add_argument("--insecure", action="store_true", help="plaintext gRPC (development only)")
