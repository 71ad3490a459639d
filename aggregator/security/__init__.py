"""Who may call the aggregator: server TLS and mTLS (``server_tls``), caller identities and
tokens — SPIFFE URIs, static tokens, Kubernetes TokenReview — with the push and score
authorisation rules (``auth``), and the ``--tls-*``/``--token-*`` flags checked in one
place (``options``). The client side of the same handshake is ``wire.client_security``.
"""
