"""The contention lab: ``kubeattention calibrate`` runs real victims beside stress-ng
antagonists (in CPU-quota cgroups) on this machine and records, with the agent's own
collectors, what the node measured and how much each victim slowed down.

``runner`` is the command; ``plan`` holds a run's parameters and measuring order,
``session`` measures them (``progress`` its bar); ``victims`` and ``drivers`` run and time
the victims, ``antagonists`` names the stress-ng configurations, ``cgroups`` makes the
quota cgroups.
The rows it writes are ``scorer.calibration.rows``; it imports ``agent`` and ``scorer``
and nothing imports it but the command line.
"""
