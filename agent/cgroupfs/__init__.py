"""Readers of the host's cgroups, shared by the collectors and pod attribution:

* ``hierarchies`` - where cgroup v2 and the v1 cpu controller are mounted, a cgroup's v2 id;
* ``bandwidth`` - CFS throttling counters of the leaf cgroups under a root (one walk for
  the node's throttled ratio and each pod's);
* ``task_cgroups`` - a process's cpu-controller cgroup path (``/proc/<tgid>/cgroup``), cached.
"""
