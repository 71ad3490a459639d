"""The wire: what every part of KubeAttention agrees on, and nothing else.

The generated gRPC API (``wire.v1``, from ``proto/kubeattention/v1``), the metric and
pod-feature schema (``wire.schema``: the 15 node metrics in contract order, their units,
ranges and normalisation), the score statuses (``wire.status``), HOST:PORT addresses
(``wire.address``), how a client reaches the aggregator (``wire.client_security``: TLS,
mTLS, bearer tokens) and the retry backoff (``wire.backoff``). It imports no other
KubeAttention package; every other package may import it.
"""

#: The release, defined once (pyproject.toml reads it; vectors and recordings carry it).
__version__ = "0.1.0"
