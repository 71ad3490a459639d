"""Generated gRPC stubs of ``kubeattention.v1`` (``make proto`` from ``proto/kubeattention/v1``; do not edit)."""
