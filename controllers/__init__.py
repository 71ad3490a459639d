"""Kubernetes controllers that act on the cluster: the outcome collector
(``kubeattention collector``: joins pods with KubeAttention's decisions and records their
outcomes) and the rebalancer (``kubeattention rebalance``: finds pods on noisy nodes and
recommends or makes moves, honouring PodDisruptionBudgets).

The collector is ``outcome_collector`` (the collector and its command), ``pod_outcome``
(outcomes and what is seen of a pod), ``decision_index`` (the join with ``ka:decisions``),
``outcome_record`` (the record written) and ``pod_watch`` (list and watch). The rebalancer
is ``rebalancer`` (the round and its command), ``rebalance_config``, ``rebalance_rules``
(pure), ``rebalance_actions`` (evictions, events) and ``rebalance_report``. Both commands
share ``command_line``.

They sit above everything they use: ``client`` (BatchScore over gRPC), ``scheduling``
(the decision log), the aggregator's store, ``kubeapi`` and ``wire``.
"""
