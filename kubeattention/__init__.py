"""KubeAttention: noisy-neighbour-aware scheduling for Kubernetes.

This package holds the command line (``kubeattention``) and the generated gRPC API
(``kubeattention.v1``, from ``proto/``). The parts live in ``agent``, ``aggregator`` and
``scorer``.
"""

__version__ = "0.1.0"
