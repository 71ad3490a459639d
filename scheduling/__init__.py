"""kube-scheduler integration, served by the aggregator process: the extender protocol
over the batch scorer (``scheduling.extender``), the shadow-mode decision log in Redis
(``scheduling.decisions``) and ``kubeattention shadow-report`` (``scheduling.shadow_report``).

Imports the aggregator service (its batch scorer and store), ``kubeapi``, ``inference`` and ``wire``.
"""
