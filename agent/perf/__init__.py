"""Hardware performance counters through ``perf_event_open(2)``, shared by the perf-counter
and memory-bandwidth collectors, top to bottom:

* ``counters`` - the device (:class:`~agent.perf.counters.PerfCounters`): opens, reads and
  closes the per-CPU counter groups, turns a failure at start-up into one reason, and the
  cheap start-up probe ``agent --check`` uses (:func:`~agent.perf.counters.probe_pmu`);
* ``intervals`` - cumulative snapshots and the counts of one interval (multiplex scaling,
  wrap and restart), pure;
* ``syscalls`` - ctypes over ``perf_event_open(2)`` (``struct perf_event_attr``, reads);
* ``events`` - the four hardware events, named as perf(1) names them.
"""
