"""The public client library: BatchScore with a deadline, a circuit breaker and a neutral
fallback (``client.batchscore``), and ``kubeattention score`` (``client.score_cli``).

Imports ``wire`` and ``inference`` (the fallback score), never the aggregator: a
scheduler plugin or a controller links this and talks gRPC.
"""
