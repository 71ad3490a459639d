"""The KubeAttention node agent: collectors -> NodeVector -> HTTP and gRPC push.

``agent.collectors`` read the host (one module per source), ``agent.collect`` composes
them into a :class:`agent.vector.NodeVector` per tick, ``agent.http_app`` and
``agent.exposition`` serve it, ``agent.push`` sends it to the aggregator, and
``agent.main`` / ``agent.record_cli`` are the ``kubeattention agent`` / ``record`` commands.
"""
