"""Loading the ``bpf/`` programs with bcc, one concern per module:

* ``program`` - what a collector asks for (:class:`~agent.ebpf.program.ProgramSpec`) and the
  source as bcc compiles it;
* ``probes`` - can this host load it, and if not, why (``BpfUnavailable``); the same checks
  feed ``agent --check``;
* ``loader`` - probe, compile and attach in a helper process, check the maps;
* ``compile_helper`` - that helper: a self-contained script, run with ``python -I``;
* ``bpf_syscall`` and ``maps`` - the bare bpf(2) syscall and maps held by fd;
* ``histogram`` - the kernel's log2 histograms and their quantiles;
* ``prog_stats`` - the kernel's per-program run-time statistics;
* ``debug_cli`` - a collector's ``python -m`` entry and ``--print``.
"""
