"""The ``kubeattention`` command, on top of everything: ``cli`` (one subcommand per job,
each imported only when it runs), ``demo``, ``certs`` (a development PKI) and
``aggregator_process`` (the ``kubeattention aggregator`` process: the aggregator service,
the scheduler extender and the shadow decision log wired together). Nothing imports it
but tests and benchmarks.
"""

from wire import __version__

__all__ = ["__version__"]
