"""Loading the ``bpf/`` programs with bcc: feature probes, compile and attach in a helper
process, map access through bpf(2), log2 histograms and the kernel's run-time stats."""
