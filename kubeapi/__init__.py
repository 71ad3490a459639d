"""Kubernetes objects as KubeAttention reads them: pods (requests, QoS, profile, the pod
context the model takes, owners: ``kubeapi.pods``), nodes (readiness, taints, affinity,
allocatable: ``kubeapi.nodes``), resource quantities (``kubeapi.quantity``,
``kubeapi.resources``), and the API client (kubeconfig or in-cluster, paged lists, error
summaries: ``kubeapi.api_client``).

Imports only ``wire``. Used by the aggregator (TokenReview, the extender's pod decoding),
the scheduling integration and the controllers.
"""
