"""Kubernetes objects as KubeAttention reads them: pods (requests, QoS, profile, the pod
context the model takes), nodes (readiness, taints, affinity, allocatable), resource
quantities, and the API client (kubeconfig or in-cluster, paged lists, error summaries).

Imports only ``wire``. Used by the aggregator (TokenReview, the extender's pod decoding),
the scheduling integration and the controllers.
"""
