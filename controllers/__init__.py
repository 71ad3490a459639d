"""Kubernetes controllers that act on the cluster: the outcome collector
(``kubeattention collector``: joins pods with KubeAttention's decisions and records their
outcomes) and the rebalancer (``kubeattention rebalance``: finds pods on noisy nodes and
recommends or makes moves, honouring PodDisruptionBudgets).

They sit above everything they use: ``client`` (BatchScore over gRPC), ``scheduling``
(the decision log), the aggregator's store, ``kubeapi`` and ``wire``.
"""
