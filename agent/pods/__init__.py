"""Attribution: which pod a cgroup belongs to, who that pod is, and which pods stand out.

Small pieces, in data-flow order:

* ``cgroup_path`` - a cgroup path -> pod UID, QoS class, container id
  (:func:`~agent.pods.cgroup_path.parse_cgroup_path`), for every kubelet driver and runtime;
* ``cgroup_ids`` - a cgroup v2 id (what ``bpf_get_current_cgroup_id()`` returns) -> its path
  (:class:`~agent.pods.cgroup_ids.CgroupIdIndex`), so eBPF per-cgroup figures can be attributed;
* ``resolver`` - pod UID -> namespace/name from the kubelet's ``/pods``
  (:class:`~agent.pods.resolver.KubeletPodResolver`), ``apiserver_resolver`` - the same from
  a list + watch of this node's pods (:class:`~agent.pods.apiserver_resolver.ApiServerPodResolver`),
  ``source`` - which of them ``--pods-from`` picks, and its ``agent --check`` line;
* ``cpu`` - per-pod CPU time and CFS throttling per interval
  (:class:`~agent.pods.cpu.PodCpuSampler`);
* ``offenders`` - the top-N pods per metric as proto ``PodOffender`` rows.
"""
