"""Calibration on real contention: victims, stress-ng antagonists, the agent's collectors.

``runner`` is ``kubeattention calibrate``; ``victims``/``drivers`` run and time the victims,
``antagonists`` names the stress-ng configurations, ``rows`` is the JSONL row format,
``data`` turns rows into model input, ``fit`` fits the contention curves to them.
"""
